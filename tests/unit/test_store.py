"""The store, against each back end (local: SQLite and files; Redis): records committed in batches and read by
owner, idempotency keys, unsettled jobs, output, pruning; and the local back end's data directory: its layout
and start-up checks."""

from __future__ import annotations

import os

import pytest
from store_backends import BACKENDS, backend_for
from workerctl.protocol.jobs import JobStatus
from workerctl.store.backends import open_reader, open_writer
from workerctl.store.interface import JobRecord, OutputWriteError, StoreError
from workerctl.store.layout import DataDirError, DataLayout, hold_lock
from workerctl.store.local import prepare

MIB = 1024 * 1024


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout(tmp_path / "data")
    prepare(layout)
    return layout


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    return backend_for(request, tmp_path / "data")


@pytest.fixture
def writer(backend):
    store = open_writer(backend.location, MIB)
    yield store
    store.close()


@pytest.fixture
def reader(backend, writer):
    store = open_reader(backend.location)
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
    record = job(1, status=JobStatus.RUNNING)
    writer.insert(record)
    record.move_to(JobStatus.FINISHED, exit_code=3, ended_at=2000.0, output_bytes=12)
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
    with pytest.raises(StoreError, match="(?i)unique"):
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


def test_prune_deletes_old_and_surplus_ended_jobs_with_their_output(backend, reader):
    writer = open_writer(backend.location, MIB)
    for number in range(4):
        writer.insert(job(number, status=JobStatus.FINISHED, ended_at=1000.0 + number))
        writer.open_output(job(number).id).close()
    writer.insert(job(9, status=JobStatus.RUNNING))  # never pruned while it runs
    writer.commit()
    assert writer.prune(older_than=1001.5, keep_per_owner=3) == 2  # jobs 0 and 1 ended too long ago
    assert writer.prune(older_than=0.0, keep_per_owner=1) == 1  # job 2: only the newest ended job is kept
    writer.close()  # waits for the output directories to go
    assert [record.id for record in reader.list("alice", None, 10)] == [job(9).id, job(3).id]
    assert backend.kept_outputs() == {job(3).id}


def test_list_filters_by_label_and_status_together(writer, reader):
    writer.insert(job(1, labels=("nightly", "db")))
    writer.insert(job(2, labels=("nightly",), status=JobStatus.FINISHED))
    writer.insert(job(3, labels=("db",)))
    writer.insert(job(4, owner="bob", labels=("nightly",)))
    writer.commit()
    assert [record.id for record in reader.list("alice", None, 10, "nightly")] == [job(2).id, job(1).id]
    assert [record.id for record in reader.list("alice", JobStatus.CREATED, 10, "db")] == [job(3).id, job(1).id]
    assert reader.list("alice", None, 10, "nigh") == [] and reader.list("alice", JobStatus.STOPPED, 10) == []


def test_a_filtered_list_finds_matches_far_down_a_long_history(writer, reader):
    for number in range(450):
        writer.insert(job(number, status=JobStatus.FINISHED if number % 100 == 7 else JobStatus.CREATED))
    writer.commit()
    assert [record.id for record in reader.list("alice", JobStatus.FINISHED, 3)] == \
        [job(407).id, job(307).id, job(207).id]
    assert len(reader.list("alice", JobStatus.FINISHED, 10)) == 5
    assert len(reader.list("alice", None, 1000)) == 450


def test_the_writer_sees_its_own_batch_before_the_commit(writer, reader):
    record = job(1, idempotency_key="k")
    writer.insert(record)
    assert writer.get(record.id, "alice") == record and writer.get(record.id, "bob") is None
    assert writer.find_by_key("alice", "k") == record and writer.find_by_key("bob", "k") is None
    writer.commit()
    record.status = JobStatus.RUNNING
    writer.save(record)
    assert writer.get(record.id, "alice").status is JobStatus.RUNNING
    assert reader.get(record.id, "alice").status is JobStatus.CREATED


def test_unsettled_jobs_of_every_owner_oldest_first(writer):
    writer.insert(job(1, owner="bob"))
    writer.insert(job(2, status=JobStatus.RUNNING))
    writer.insert(job(3, owner="bob", status=JobStatus.ERROR, ended_at=5.0))
    writer.commit()
    assert [record.id for record in writer.unsettled()] == [job(1).id, job(2).id]
    for number, status in ((1, JobStatus.RUNNING), (2, JobStatus.STOPPED)):
        writer.save(job(number, owner="bob" if number == 1 else "alice", status=status, ended_at=6.0))
    writer.commit()
    assert [(record.id, record.status) for record in writer.unsettled()] == [(job(1).id, JobStatus.RUNNING)]


def test_a_save_of_a_job_that_is_not_there_changes_nothing(writer, reader):
    writer.save(job(1, status=JobStatus.FINISHED, ended_at=5.0))
    writer.commit()
    assert reader.get(job(1).id, "alice") is None and reader.list("alice", None, 10) == []
    assert writer.prune(older_than=10.0, keep_per_owner=0) == 0


def test_a_pruned_jobs_key_can_be_used_again(writer, reader):
    writer.insert(job(1, status=JobStatus.FINISHED, ended_at=5.0, idempotency_key="k"))
    writer.commit()
    assert writer.prune(older_than=10.0, keep_per_owner=10) == 1
    assert writer.find_by_key("alice", "k") is None
    writer.insert(job(2, idempotency_key="k"))
    writer.commit()
    assert writer.find_by_key("alice", "k").id == job(2).id


def test_a_jobs_output_is_made_once(writer):
    writer.open_output(job(1).id).close()
    with pytest.raises(OutputWriteError):
        writer.open_output(job(1).id)


def test_an_empty_output_and_reads_past_the_end(writer, reader):
    record = job(1, status=JobStatus.RUNNING)
    assert (reader.read_output(record, 0, 10).parts, reader.read_output(record, 0, 10).total) == ([], 0)
    sink = writer.open_output(record.id)
    assert reader.read_output(record, 0, None).next_offset == 0
    sink.write(b"abc")
    chunk = reader.read_output(record, 9, 4)
    assert (chunk.parts, chunk.next_offset, chunk.total, chunk.dropped) == ([], 9, 3, 0)


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


def test_a_save_never_moves_a_job_out_of_a_final_status(writer, reader):
    """Both back ends check the move against the stored status, as JobRecord.move_to does in memory."""
    writer.insert(job(1, status=JobStatus.CREATED))
    writer.commit()
    writer.save(job(1, status=JobStatus.ERROR, reason="host h1 lost"))
    writer.commit()
    for late in (JobStatus.FINISHED, JobStatus.RUNNING, JobStatus.CREATED):
        writer.save(job(1, status=late, exit_code=0))
        writer.commit()
    assert reader.get(job(1).id, "alice") == job(1, status=JobStatus.ERROR, reason="host h1 lost")
