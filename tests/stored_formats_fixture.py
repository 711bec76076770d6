"""The stored-formats fixture: what a release's store wrote, kept so that later versions prove they still read it
(tests/unit/test_stored_formats.py). This module owns what the fixture holds (RECORDS, OUTPUTS) and how it is
made; tests/fixtures/stored-formats/ is the fixture itself:

    data-dir/        a data directory, as the local back end leaves it: jobs.sqlite3 and output/<job>/ only
                     (no homes, locks or reserve: nothing a later version reads back as a job)
    redis-keys.json  the keys the Redis back end wrote for the same jobs: each record's JSON, each output's hash
                     and pieces, under the default prefix
    written-by.txt   the version and commit of the code that wrote them

It is a directory rather than an archive so that a refresh shows in `git diff` file by file, the output as text;
git compresses the SQLite file's empty pages itself.

Refresh it at a release, and only then, with that release's code:

    .venv/bin/python tests/stored_formats_fixture.py

The test then checks the next version against the release before it. Written between releases, the fixture
would be the new code's own and prove nothing about an upgrade; so RECORDS and OUTPUTS, which the test expects
back, change only with a refresh. Needs redis-server (Debian's package).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import msgspec
from workerctl.protocol.jobs import JobStatus, is_job_id
from workerctl.protocol.limits import JobLimits
from workerctl.store.interface import JobRecord, JobWriter
from workerctl.store.layout import DataLayout
from workerctl.store.local import LocalJobWriter, prepare
from workerctl.store.output_log import OutputLimits

FIXTURE = Path(__file__).parent / "fixtures" / "stored-formats"
DATA_DIR = FIXTURE / "data-dir"
REDIS_KEYS = FIXTURE / "redis-keys.json"

# Small, so that a few KB of output go past it: 512 bytes of head, then four rolling tail segments of 128.
OUTPUT_CAP_BYTES = 1024
REDIS_HOST = "agent-1"  # the host of the Redis back end's writer, which every record there names
_WRITE_BYTES = 100  # output is written in pieces of this size, as a pipe hands it over: some straddle segments
_T0 = 1_717_236_000.0  # 2024-06-01 10:00 UTC; times in quarters of a second are exact in any float format
_MIB = 1024 * 1024
_LIMITS = JobLimits(timeout_seconds=60.0, memory_bytes=256 * _MIB, cpus=0.5, processes=64)


def _job_id(name: str) -> str:
    """A job ID of the real form, readable in the fixture's file names."""
    job_id = f"j{name:a<26}"
    assert is_job_id(job_id), job_id
    return job_id


CREATED = _job_id("created")
RUNNING = _job_id("running")
FINISHED = _job_id("finished")
FAILED = _job_id("failed")
KILLED = _job_id("killed")
STOPPED = _job_id("stopped")
TIMED_OUT = _job_id("timedout")
NOT_STARTED = _job_id("notstarted")
BEFORE_LIMITS = _job_id("beforelimits")

OUTPUTS = {
    RUNNING: b"step 1 of 3\n",  # so far
    FINISHED: "héllo wörld\n".encode(),
    FAILED: b"".join(b"line %04d\n" % number for number in range(300)),  # past the cap: bytes 512-2559 dropped
    KILLED: b"",
    STOPPED: b"waiting\n",
    TIMED_OUT: b"tick\n",
    BEFORE_LIMITS: b" 10:00:17 up 1 day\n",
}
"""Every byte each job wrote; the jobs that never started have no output at all."""

RECORDS = [
    JobRecord(CREATED, "alice", "sleep 30 && echo waited", JobStatus.CREATED, _T0 + 1,
              idempotency_key="nightly-2024-06-01", limits=_LIMITS,
              env={"GREETING": "grüß dich", "EMPTY": ""}, labels=("nightly", "db")),
    # Usage live, and no output_bytes yet: the supervisor records the size as the job ends.
    JobRecord(RUNNING, "alice", "./migrate.sh", JobStatus.RUNNING, _T0 + 2, started_at=_T0 + 2.25, limits=_LIMITS,
              cpu_seconds=0.5, peak_memory_bytes=12 * _MIB, env={"PGHOST": "db.internal"}, labels=("db",)),
    JobRecord(FINISHED, "bob", "echo 'héllo wörld'", JobStatus.FINISHED, _T0 + 3, exit_code=0,
              started_at=_T0 + 3.25, ended_at=_T0 + 3.5, idempotency_key="greet",
              output_bytes=len(OUTPUTS[FINISHED]), limits=_LIMITS, cpu_seconds=0.25, peak_memory_bytes=2 * _MIB,
              labels=("greeting",)),
    JobRecord(FAILED, "alice", "seq -f 'line %04g' 0 299; exit 3", JobStatus.FINISHED, _T0 + 4, exit_code=3,
              started_at=_T0 + 4.25, ended_at=_T0 + 5.75, output_bytes=len(OUTPUTS[FAILED]),
              limits=JobLimits(timeout_seconds=600.0, memory_bytes=1024 * _MIB, cpus=2.0, processes=64),
              cpu_seconds=1.5, peak_memory_bytes=40 * _MIB, labels=("nightly",)),
    JobRecord(KILLED, "bob", "kill -9 $$", JobStatus.FINISHED, _T0 + 6, signal=9, started_at=_T0 + 6.25,
              ended_at=_T0 + 6.5, limits=_LIMITS, cpu_seconds=0.0, peak_memory_bytes=_MIB),
    JobRecord(STOPPED, "alice", "echo waiting; sleep 600", JobStatus.STOPPED, _T0 + 7, signal=15,
              started_at=_T0 + 7.25, ended_at=_T0 + 9.0, output_bytes=len(OUTPUTS[STOPPED]), limits=_LIMITS,
              cpu_seconds=0.0, peak_memory_bytes=_MIB),
    JobRecord(TIMED_OUT, "bob", "echo tick; sleep 10", JobStatus.ERROR, _T0 + 10, signal=15,
              reason="time limit of 5 s exceeded", started_at=_T0 + 10.25, ended_at=_T0 + 15.25,
              output_bytes=len(OUTPUTS[TIMED_OUT]), limits=msgspec.structs.replace(_LIMITS, timeout_seconds=5.0),
              cpu_seconds=0.0, peak_memory_bytes=_MIB),
    JobRecord(NOT_STARTED, "alice", "./missing", JobStatus.ERROR, _T0 + 16,
              reason="could not start: No such file or directory", ended_at=_T0 + 16.25, limits=_LIMITS),
    # As a data directory upgraded from a version before limits, usage, env and labels holds its old jobs.
    JobRecord(BEFORE_LIMITS, "bob", "uptime", JobStatus.FINISHED, _T0 + 17, exit_code=0, started_at=_T0 + 17.25,
              ended_at=_T0 + 17.5, output_bytes=len(OUTPUTS[BEFORE_LIMITS])),
]
"""Every job of the fixture as last written, in the order they were created: a job in every status (finished
with an exit code of 0 and of 3, and by a signal), with limits, usage, env, labels and idempotency keys."""


def write_jobs(writer: JobWriter, host: str | None = None) -> None:
    """Write RECORDS and OUTPUTS through `writer` as the supervisor does: each job inserted as created, saved as it
    starts and as it ends, and its output written as it runs. In a shared store, the records name `host`."""
    for record in RECORDS:
        final = replace(record, host=host)
        waiting = replace(final, status=JobStatus.CREATED, exit_code=None, signal=None, reason=None, started_at=None,
                          ended_at=None, output_bytes=0, cpu_seconds=None, peak_memory_bytes=None)
        writer.insert(waiting)
        writer.commit()
        if final.started_at is not None:
            writer.save(replace(waiting, status=JobStatus.RUNNING, started_at=final.started_at))
        if final.id in OUTPUTS:
            sink = writer.open_output(final.id)
            data = OUTPUTS[final.id]
            for start in range(0, len(data), _WRITE_BYTES):
                sink.write(data[start:start + _WRITE_BYTES])
            sink.close()
        if final.status is not JobStatus.CREATED:
            writer.save(final)
        writer.commit()


def write_data_dir(destination: Path) -> None:
    """Write the jobs with the local back end and keep, at `destination`, the records and the output."""
    with tempfile.TemporaryDirectory() as scratch:
        layout = DataLayout(Path(scratch) / "data")
        prepare(layout)
        writer = LocalJobWriter(layout, OutputLimits.for_cap(OUTPUT_CAP_BYTES))
        write_jobs(writer)
        writer.close()  # the last connection: SQLite moves the write-ahead log into the file and deletes it
        destination.mkdir(parents=True)
        shutil.copy2(layout.records, destination / layout.records.name)
        shutil.copytree(layout.output_root, destination / layout.output_root.name)


def write_redis_keys(destination: Path) -> None:
    """Write the jobs with the Redis back end, to a redis-server of its own, and save the keys of their records
    and output as JSON at `destination`."""
    from redis_server import RedisServer
    from workerctl.store.redis_store import RedisJobWriter

    with tempfile.TemporaryDirectory() as scratch:
        server = RedisServer(Path(scratch))
        try:
            writer = RedisJobWriter(server.url(), OutputLimits.for_cap(OUTPUT_CAP_BYTES), REDIS_HOST)
            write_jobs(writer, REDIS_HOST)
            writer.close()
            keys: dict[str, str | dict[str, str]] = {}
            with server.client() as client:
                for kind in ("job", "output", "piece"):
                    for key in client.scan_iter(f"workerctl:{kind}:*"):
                        if client.type(key) == b"hash":
                            keys[key.decode()] = {name.decode(): _text(value)
                                                  for name, value in client.hgetall(key).items()}
                        else:
                            keys[key.decode()] = _text(client.get(key))
        finally:
            server.stop()
    destination.write_text(json.dumps(dict(sorted(keys.items())), indent=1) + "\n")


def _text(value: bytes) -> str:
    # Redis holds bytes, and output pieces need not be UTF-8 (a segment can end inside a character): surrogate
    # escapes carry any byte through JSON and back (stored_bytes), while text, as most of it is, stays text.
    return value.decode("utf-8", "surrogateescape")


def stored_bytes(text: str) -> bytes:
    """The bytes Redis held, from their text in redis-keys.json."""
    return text.encode("utf-8", "surrogateescape")


def main() -> None:
    made_at = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(FIXTURE, ignore_errors=True)
    write_data_dir(DATA_DIR)
    write_redis_keys(REDIS_KEYS)
    (FIXTURE / "written-by.txt").write_text(f"workerctl {version('workerctl')} at {made_at}\n")


if __name__ == "__main__":
    main()
