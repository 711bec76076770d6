"""Upgrades keep what the last release stored: the data directory and the Redis keys it wrote (the fixture in
tests/fixtures/stored-formats/, made and described by tests/stored_formats_fixture.py) read back with this code
record by record and byte by byte, dropped output accounted for, and the supervisor's writer goes on with them.

A failure here means this version cannot read what the last release left: migrate the old form as the store
opens it (records.py adds new columns so), never refresh the fixture to make it pass."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from facilities import missing_module, needs
from stored_formats_fixture import (
    BEFORE_LIMITS,
    CREATED,
    DATA_DIR,
    FAILED,
    FINISHED,
    KILLED,
    OUTPUTS,
    RECORDS,
    REDIS_HOST,
    REDIS_KEYS,
    RUNNING,
    stored_bytes,
)
from workerctl.protocol.jobs import JobStatus, new_job_id
from workerctl.store.backends import open_reader, open_writer
from workerctl.store.interface import JobRecord, OutputChunk, OutputPart, StoreError, now
from workerctl.store.layout import DataLayout
from workerctl.store.local import prepare

MIB = 1024 * 1024
UNSETTLED = [record for record in RECORDS if record.id in (CREATED, RUNNING)]
FINAL = [record for record in RECORDS if record.status.is_final]

Read = Callable[[JobRecord, int, int | None], OutputChunk]
"""A back end's read of a job's output: (record, offset, limit) to the chunk."""


def whole(data: bytes) -> OutputChunk:
    """A read from byte 0 of an output kept whole."""
    return OutputChunk([OutputPart(0, data)] if data else [], len(data), len(data), 0)


# The capped output as the fixture keeps it: its 512 bytes of head, then the tail segments from byte 2560 on (the
# last three of 128 and one of 56); the 2048 bytes between were dropped. Spelt out, not derived from the current
# output limits: they decide what new output keeps, not what old output holds.
CAPPED = OUTPUTS[FAILED]
FIRST_READS = {**{record.id: whole(OUTPUTS.get(record.id, b"")) for record in RECORDS},
               FAILED: OutputChunk([OutputPart(0, CAPPED[:512]), OutputPart(2048, CAPPED[2560:])], 3000, 3000, 2048)}
"""What a read of each job's output from byte 0, with no limit, answers."""


def check_outputs(read: Read, records: list[JobRecord]) -> None:
    """Every job's output reads back as written, and the capped one from any offset: from within the head across
    the gap, from within the gap, and from within the tail."""
    for record in records:
        assert joined(read(record, 0, None)) == FIRST_READS[record.id], record.id
    [capped] = [record for record in records if record.id == FAILED]
    assert joined(read(capped, 500, 20)) == OutputChunk(
        [OutputPart(0, CAPPED[500:512]), OutputPart(2048, CAPPED[2560:2568])], 2568, 3000, 2048)
    assert joined(read(capped, 1000, 100)) == OutputChunk([OutputPart(1560, CAPPED[2560:2660])], 2660, 3000, 2048)
    assert joined(read(capped, 2990, None)) == OutputChunk([OutputPart(0, CAPPED[2990:])], 3000, 3000, 2048)


def joined(chunk: OutputChunk) -> OutputChunk:
    """The chunk with each part that follows the one before it without a gap joined to it: a reader answers a
    part per file or key it read, which says nothing of the stored output."""
    parts: list[OutputPart] = []
    for part in chunk.parts:
        if parts and not part.skipped:
            parts[-1] = OutputPart(parts[-1].skipped, parts[-1].data + part.data)
        else:
            parts.append(part)
    return replace(chunk, parts=parts)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy of the fixture's data directory, prepared as serve prepares its data directory as it starts (which
    brings the records up to date)."""
    root = tmp_path / "data"
    shutil.copytree(DATA_DIR, root)
    prepare(DataLayout(root))
    return root


def test_every_record_and_output_reads_back_as_written(data_dir: Path) -> None:
    with closing(open_reader(data_dir)) as reader:
        assert [reader.get(record.id, record.owner) for record in RECORDS] == RECORDS
        check_outputs(reader.read_output, RECORDS)


def test_old_jobs_are_listed_by_owner_status_and_label(data_dir: Path) -> None:
    with closing(open_reader(data_dir)) as reader:
        for owner in ("alice", "bob"):
            assert reader.list(owner, None, 100) == [record for record in reversed(RECORDS) if record.owner == owner]
        finished = reader.list("bob", JobStatus.FINISHED, 100)
        assert [record.id for record in finished] == [BEFORE_LIMITS, KILLED, FINISHED]
        assert [record.id for record in reader.list("alice", None, 100, "nightly")] == [FAILED, CREATED]


def test_the_supervisor_goes_on_with_the_old_jobs(data_dir: Path) -> None:
    writer = open_writer(data_dir, MIB)
    try:
        assert writer.unsettled() == UNSETTLED
        assert writer.find_by_key("alice", "nightly-2024-06-01") == UNSETTLED[0]
        waiting, running = writer.unsettled()
        waiting.move_to(JobStatus.STOPPED)
        running.move_to(JobStatus.FINISHED, exit_code=0, output_bytes=len(OUTPUTS[RUNNING]))
        new = JobRecord(new_job_id(), "alice", "true", JobStatus.CREATED, now(), idempotency_key="nightly-2024-06-02",
                        labels=("nightly",))
        for record in (waiting, running):
            writer.save(record)
        writer.insert(new)
        writer.commit()
        with pytest.raises(StoreError, match="(?i)unique"):  # the old records' keys still hold
            writer.insert(replace(new, id=new_job_id(), owner="bob", idempotency_key="greet"))
        writer.rollback()
        assert writer.unsettled() == [new]
    finally:
        writer.close()
    with closing(open_reader(data_dir)) as reader:
        assert (reader.get(waiting.id, "alice"), reader.get(running.id, "alice")) == (waiting, running)
        assert [record.id for record in reader.list("alice", None, 100, "nightly")] == [new.id, FAILED, CREATED]
        assert reader.read_output(running, 0, None) == whole(OUTPUTS[RUNNING])


def test_old_jobs_are_pruned_with_their_output(data_dir: Path) -> None:
    writer = open_writer(data_dir, MIB)
    assert writer.prune(older_than=now(), keep_per_owner=100) == len(FINAL)  # every one ended in 2024
    writer.close()  # waits for the output directories to go
    assert os.listdir(DataLayout(data_dir).output_root) == [RUNNING]
    with closing(open_reader(data_dir)) as reader:
        assert reader.list("alice", None, 100) + reader.list("bob", None, 100) == UNSETTLED[::-1]


class StoredKeys:
    """The keys of redis-keys.json, answering the reads the Redis back end makes of a record and of an output
    (GET, HMGET, GETRANGE) as redis-py does: bytes, and None for what is not there."""

    def __init__(self, keys: dict[str, str | dict[str, str]]) -> None:
        self._keys = keys

    def get(self, key: str) -> bytes | None:
        text = self._keys.get(key)
        assert not isinstance(text, dict), key
        return stored_bytes(text) if text is not None else None

    def hmget(self, key: str, *fields: str) -> list[bytes | None]:
        stored = self._keys.get(key, {})
        assert isinstance(stored, dict), key
        return [stored_bytes(stored[name]) if name in stored else None for name in fields]

    def getrange(self, key: str, start: int, end: int) -> bytes:
        return (self.get(key) or b"")[start:end + 1]  # Redis's end is the last byte's offset


def test_redis_records_and_output_decode_as_written() -> None:
    """Without a redis-server: the stored text through the back end's own decoding, by the back end's key names."""
    needs("redis", missing_module("redis", "pip install -e '.[test]'"))
    from workerctl.store.redis_connection import DEFAULT_PREFIX, RedisKeys
    from workerctl.store.redis_output import read_output
    from workerctl.store.redis_records import decode_record

    stored, keys = StoredKeys(json.loads(REDIS_KEYS.read_text())), RedisKeys(DEFAULT_PREFIX)
    records = []
    for record in RECORDS:
        text = stored.get(keys.job(record.id))
        assert text is not None, record.id
        records.append(decode_record(text))
    assert records == [replace(record, host=REDIS_HOST) for record in RECORDS]
    check_outputs(lambda record, offset, limit: read_output(stored, keys, record.id, offset, limit), records)
