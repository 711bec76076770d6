"""The floors: what this machine can do for each operation with no job server in the way.

- Spawning: `/bin/sh -c` started the way workerctl's supervisor starts a job (as the job user, in a session of
  its own, in a private directory with umask 077 and an explicit environment, stdin from /dev/null, stdout and
  stderr into one 1 MiB pipe), its output copied to a file, and reaped. No record is kept, and no cgroup is made;
  a second spawn floor makes one per job as workerctl's supervisor does (mkdir, move itself in, spawn, move
  back out; rmdir once reaped), to show what that costs.
- Output: the same spawn for a job that floods its pipe, copied to a file in 1 MiB reads.
- HTTPS: a minimal Tornado handler (bench/floor_server.py) in a process of its own.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import pwd
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.http_client import HttpConnection
from bench.load import Operation, OperationFactory
from bench.material import Credentials
from bench.workload import FLOOD_BYTES, FLOOD_COMMAND, JOB_USER

_READ_BYTES = 1024 * 1024
_PIPE_BYTES = 1024 * 1024
_OUTPUT_FILE_BYTES = 64 * 1024 * 1024  # the copy starts its file over past this, to bound the disk it uses
_PORT_SECONDS = 30.0
REPOSITORY = Path(__file__).resolve().parent.parent


def _private_directory(path: Path) -> Path:
    user = pwd.getpwnam(JOB_USER)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _spawn(command: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start `command` as the supervisor starts a job; the process and the read end of its output pipe."""
    user = pwd.getpwnam(JOB_USER)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # as the supervisor does
        process = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.STDOUT,
            cwd=workdir, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"},
            start_new_session=True, umask=0o077, user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    finally:
        os.close(write_end)
    return process, read_end


def _copy_output(read_end: int, output: int) -> int:
    """Copy the pipe to the file until EOF; the bytes copied."""
    copied = 0
    while data := os.read(read_end, _READ_BYTES):
        copied += len(data)
        if copied % _OUTPUT_FILE_BYTES < len(data):
            os.ftruncate(output, 0)
            os.lseek(output, 0, os.SEEK_SET)
        os.write(output, data)
    return copied


def cgroup_home() -> Path | None:
    """This process's directory in a writable cgroup v2 hierarchy, if there is one."""
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = [line.split(" - ")[0].split(" ")[4] for line in mountinfo if " - cgroup2 " in line]
    with open("/proc/self/cgroup") as cgroups:
        own = next((line[3:].strip() for line in cgroups if line.startswith("0::")), None)
    if not mounts or own is None:
        return None
    home = Path(mounts[0] + own)
    return home if os.access(home / "cgroup.procs", os.W_OK) else None


@contextmanager
def _standing_in(cgroup: Path | None, home: Path | None) -> Iterator[None]:
    if cgroup is None or home is None:
        yield
        return
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    try:
        yield
    finally:
        (home / "cgroup.procs").write_text(str(os.getpid()))


def spawn_operation(directory: Path, command: str, cgroups: Path | None = None) -> OperationFactory:
    """Spawn `command`, copy its output to a file, reap it: one job done with nothing but the kernel. With
    `cgroups` (a directory in the cgroup v2 hierarchy), each job gets a cgroup of its own under it."""
    def factory(index: int) -> Operation:
        workdir = _private_directory(directory / f"client-{index}")
        output = os.open(directory / f"output-{index}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        home = cgroup_home() if cgroups is not None else None
        serial = itertools.count()

        def spawn_and_reap() -> None:
            cgroup = None if cgroups is None else cgroups / f"{os.getpid()}-{next(serial)}"
            if cgroup is not None:
                cgroup.mkdir()
            with _standing_in(cgroup, home):
                process, read_end = _spawn(command, workdir)
            try:
                _copy_output(read_end, output)
            finally:
                os.close(read_end)
            process.wait()
            if cgroup is not None:
                cgroup.rmdir()
        return spawn_and_reap
    return factory


@contextmanager
def cgroup_parent(name: str) -> Iterator[Path | None]:
    """A cgroup to make the cgroup floor's jobs under, removed afterwards; None where cgroups are not writable."""
    home = cgroup_home()
    if home is None:
        yield None
        return
    parent = home / name
    parent.mkdir(exist_ok=True)
    try:
        yield parent
    finally:
        for child in parent.iterdir():
            if child.is_dir():
                child.rmdir()
        parent.rmdir()


def output_floor(directory: Path) -> float:
    """Bytes per second of the flood job's output copied to a file, with no server."""
    workdir = _private_directory(directory / "flood")
    output = os.open(directory / "flood-output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    began = time.monotonic()
    try:
        process, read_end = _spawn(FLOOD_COMMAND, workdir)
        try:
            copied = _copy_output(read_end, output)
        finally:
            os.close(read_end)
        process.wait()
    finally:
        os.close(output)
        os.unlink(directory / "flood-output")
    if copied != FLOOD_BYTES:
        raise RuntimeError(f"the flood wrote {copied} bytes, not {FLOOD_BYTES}")
    return copied / (time.monotonic() - began)


class FloorHttpsServer:
    """bench/floor_server.py running in a process of its own."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FloorHttpsServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor_server", str(self.credentials.cert), str(self.credentials.key)],
            cwd=REPOSITORY, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], _PORT_SECONDS)
        line = self.process.stdout.readline() if ready else ""  # the port, once it listens
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError("the floor HTTPS server did not start")
        self.port = int(line)
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def connect(self, keep_alive: bool = True) -> HttpConnection:
        return HttpConnection(self.port, self.credentials.client_context(),
                              headers={"Content-Type": "application/json"}, keep_alive=keep_alive)
