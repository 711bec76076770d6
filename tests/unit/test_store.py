"""The local back end of the store: records committed in batches and read by owner, output files, pruning,
and the data directory's layout and start-up checks."""

from __future__ import annotations

import os

import pytest
from workerctl.protocol.jobs import JobStatus
from workerctl.store.backends import open_reader, open_writer
from workerctl.store.interface import JobRecord, StoreError
from workerctl.store.layout import DataDirError, DataLayout, hold_lock
from workerctl.store.local import prepare

MIB = 1024 * 1024


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout(tmp_path / "data")
    prepare(layout)
    return layout


@pytest.fixture
def writer(layout):
    store = open_writer(layout.root, MIB)
    yield store
    store.close()


@pytest.fixture
def reader(layout, writer):
    store = open_reader(layout.root)
    yield store
    store.close()


def job(number: int, owner: str = "alice", status: JobStatus = JobStatus.CREATED, **fields) -> JobRecord:
    return JobRecord(f"j{number:026d}", owner, f"echo {number}", status, 1000.0 + number, **fields)


def test_records_are_seen_only_once_committed(writer, reader):
    writer.insert(job(1))
    assert reader.get(job(1).id, "alice") is None
    writer.commit()
    assert reader.get(job(1).id, "alice") == job(1)


def test_another_users_job_reads_as_no_job(writer, reader):
    writer.insert(job(1))
    writer.commit()
    assert reader.get(job(1).id, "bob") is None
    assert writer.get(job(1).id, "bob") is None
    assert reader.list("bob", None, 10) == []


def test_a_rolled_back_batch_leaves_nothing(writer, reader):
    writer.insert(job(1))
    writer.rollback()
    writer.commit()
    assert reader.get(job(1).id, "alice") is None


def test_list_is_newest_first_and_filters_by_status(writer, reader):
    for number in range(5):
        writer.insert(job(number, status=JobStatus.FINISHED if number % 2 else JobStatus.CREATED))
    writer.commit()
    assert [record.id for record in reader.list("alice", None, 3)] == [job(4).id, job(3).id, job(2).id]
    assert [record.id for record in reader.list("alice", JobStatus.FINISHED, 10)] == [job(3).id, job(1).id]


def test_a_save_writes_every_field(writer, reader):
    record = job(1)
    writer.insert(record)
    record.status, record.exit_code, record.ended_at, record.output_bytes = JobStatus.FINISHED, 3, 2000.0, 12
    writer.save(record)
    writer.commit()
    assert reader.get(record.id, "alice") == record


def test_keys_and_unsettled_jobs_are_found(writer):
    writer.insert(job(1, idempotency_key="nightly"))
    writer.insert(job(2, status=JobStatus.RUNNING))
    writer.insert(job(3, status=JobStatus.STOPPED))
    writer.commit()
    assert writer.find_by_key("alice", "nightly").id == job(1).id
    assert writer.find_by_key("bob", "nightly") is None
    assert [record.id for record in writer.unsettled()] == [job(1).id, job(2).id]


def test_one_key_makes_one_job_per_user(writer):
    writer.insert(job(1, idempotency_key="k"))
    writer.insert(job(2, owner="bob", idempotency_key="k"))
    with pytest.raises(StoreError, match="UNIQUE"):
        writer.insert(job(3, idempotency_key="k"))
    writer.rollback()


def test_output_written_is_read_back_from_any_offset(writer, reader):
    record = job(1, status=JobStatus.RUNNING)
    writer.insert(record)
    writer.commit()
    sink = writer.open_output(record.id)
    sink.write(b"hello, ")
    sink.write(b"world\n")
    chunk = reader.read_output(record, 7, None)
    assert (b"".join(part.data for part in chunk.parts), chunk.next_offset, chunk.total) == (b"world\n", 13, 13)
    sink.close()
    record.status, record.output_bytes = JobStatus.FINISHED, sink.total
    assert reader.read_output(record, 0, 5).parts[0].data == b"hello"


def test_prune_deletes_old_and_surplus_ended_jobs_with_their_output(layout, reader):
    writer = open_writer(layout.root, MIB)
    for number in range(4):
        writer.insert(job(number, status=JobStatus.FINISHED, ended_at=1000.0 + number))
        writer.open_output(job(number).id).close()
    writer.insert(job(9, status=JobStatus.RUNNING))  # never pruned while it runs
    writer.commit()
    assert writer.prune(older_than=1001.5, keep_per_owner=3) == 2  # jobs 0 and 1 ended too long ago
    assert writer.prune(older_than=0.0, keep_per_owner=1) == 1  # job 2: only the newest ended job is kept
    writer.close()  # waits for the output directories to go
    assert [record.id for record in reader.list("alice", None, 10)] == [job(9).id, job(3).id]
    assert sorted(os.listdir(layout.output_root)) == [job(3).id]


def test_the_layout_names_every_path_and_a_stable_instance(tmp_path):
    layout = DataLayout(tmp_path)
    assert layout.output("j1") == tmp_path / "output" / "j1" and layout.workdir("j1") == tmp_path / "work" / "j1"
    assert layout.instance == DataLayout(tmp_path / "." ).instance != DataLayout(tmp_path / "other").instance


def test_prepare_makes_the_layout_with_private_parts_and_a_reserve(layout):
    assert (layout.root.stat().st_mode & 0o777, layout.output_root.stat().st_mode & 0o777) == (0o711, 0o700)
    assert layout.reserve.stat().st_size == MIB and layout.records.exists()
    assert layout.release_reserve() and not layout.release_reserve()


def test_an_unusable_data_directory_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataDirError, match="is not usable"):
        prepare(DataLayout(tmp_path / "file"))


def test_records_that_are_not_a_database_are_one_sentence(tmp_path):
    layout = DataLayout(tmp_path)
    layout.create()
    layout.records.write_text("not sqlite")
    with pytest.raises(DataDirError, match="cannot be opened"):
        prepare(layout)


def test_one_lock_holder_at_a_time(tmp_path):
    fd = hold_lock(tmp_path / "serve.lock")
    with pytest.raises(DataDirError, match="in use by another workerctl server"):
        hold_lock(tmp_path / "serve.lock")
    os.close(fd)
    os.close(hold_lock(tmp_path / "serve.lock"))
