"""The store's Redis back end against a real redis-server: what only it can meet. A Redis that is down, hung or
refuses the password is a StoreError with one sentence in seconds, never a hang; records and output survive
redis-server being killed and started again (the append-only file on); key prefixes keep two deployments
apart; an ACL user held to its prefix's keys can do everything; a full Redis is met with the reserve; commits
are all or nothing; and rediss:// works with a CA the URL names."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from facilities import missing_module, needs
from redis_server import RedisServer, start_tls_redis
from store_backends import LocalBackend
from support import poll_until
from workerctl.protocol.jobs import JobStatus
from workerctl.store.backends import open_reader, open_writer
from workerctl.store.interface import JobRecord, OutputWriteError, StoreError
from workerctl.store.output_log import OutputLimits

needs("redis", missing_module("redis", "pip install -e '.[test]'"))

import redis.retry  # noqa: E402 - only with redis installed
from workerctl.store.redis_records import RedisJobReader  # noqa: E402
from workerctl.store.redis_store import RedisJobWriter  # noqa: E402

MIB = 1024 * 1024


def job(number: int, owner: str = "alice", status: JobStatus = JobStatus.CREATED, **fields) -> JobRecord:
    return JobRecord(f"j{number:026d}", owner, f"echo {number}", status, 1000.0 + number, **fields)


def text(chunk) -> bytes:
    return b"".join(part.data for part in chunk.parts)


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of the test's own, to stop, freeze, restart or fill."""
    server = RedisServer(tmp_path / "redis")
    yield server
    _stop(server)


@pytest.fixture
def request_stop(request: pytest.FixtureRequest):
    """Stop a redis-server the test started itself when the test ends."""
    return lambda server: request.addfinalizer(lambda: _stop(server))


def _stop(server: RedisServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


def test_a_redis_location_opens_the_redis_back_end_and_a_path_the_local_one(tmp_path, redis_location):
    reader, writer = open_reader(redis_location), open_writer(redis_location, MIB)
    assert (type(reader), type(writer)) == (RedisJobReader, RedisJobWriter)
    reader.close()
    writer.close()
    assert type(open_reader(tmp_path)).__name__ == "LocalJobReader"


@pytest.mark.parametrize("location, sentence", [
    ("redis://127.0.0.1:notaport/0", "port is not a number"),
    ("redis:///0", "a Redis location is redis://"),
    ("redis://127.0.0.1:1/0?prefix=", "prefix is empty"),
    ("redis://127.0.0.1:1/0?colour=blue", "a parameter that is not one: 'colour'"),
])
def test_a_location_that_is_not_usable_is_one_sentence(location, sentence):
    with pytest.raises(StoreError, match=sentence):
        open_reader(location)


def test_redis_down_is_a_store_error_at_once(own_redis, monkeypatch):
    """At once: each attempt ends in the kernel's refusal, with no timeout waited out, and no retry waits first."""
    backoffs: list[float] = []
    monkeypatch.setattr(redis.retry, "sleep", backoffs.append)
    location = own_redis.url(prefix="down")
    writer, reader = open_writer(location, MIB), open_reader(location)
    writer.insert(job(1))
    writer.commit()
    own_redis.stop()
    for attempt in (lambda: reader.get(job(1).id, "alice"), lambda: reader.list("alice", None, 10),
                    lambda: writer.commit() if writer.insert(job(2)) is None else None, lambda: open_reader(location)):
        with pytest.raises(StoreError, match=r"^cannot [a-z' ]+: Redis at 127\.0\.0\.1:\d+/0 cannot be reached "
                                             r"\(Connection refused\)$"):
            attempt()
    assert backoffs == []
    sink = writer.open_output(job(1).id)  # output is held back while Redis is down
    sink.write(b"held back")
    assert writer.holding_back()
    with pytest.raises(StoreError, match="^cannot record the jobs' output: Redis at .* cannot be reached"):
        writer.commit()
    assert writer.free_reserve() is False  # never raises: the supervisor asks it while handling a StoreError
    writer.rollback()
    reader.close()
    writer.close()


def test_a_hung_redis_is_given_up_on_after_the_socket_timeout(own_redis):
    reader = open_reader(own_redis.url(prefix="hung", socket_timeout="0.5"))
    own_redis.process.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    with pytest.raises(StoreError, match="did not answer in time"):
        reader.get(job(1).id, "alice")
    assert time.monotonic() - began >= 0.5  # it waited out the socket timeout: not refused, nor broken off sooner
    assert psutil.Process(own_redis.process.pid).status() == psutil.STATUS_STOPPED  # gave up while Redis hangs
    own_redis.process.send_signal(signal.SIGCONT)
    assert reader.get(job(1).id, "alice") is None  # and it recovers by itself
    reader.close()


def test_a_wrong_password_is_one_sentence_that_does_not_repeat_it(redis_server):
    with pytest.raises(StoreError, match="refused the user or password") as refused:
        open_reader(redis_server.url(password="not-the-password"))
    assert "not-the-password" not in str(refused.value) and "\n" not in str(refused.value)


def test_records_and_output_survive_redis_being_killed_and_started_again(tmp_path, request_stop):
    """The append-only file with appendfsync always keeps every acknowledged write across a crash of
    redis-server (everysec may hold writes back for up to two seconds while an fsync is slow, and lose them);
    the same writer and reader carry on once it is back."""
    own_redis = RedisServer(tmp_path / "redis", "--appendfsync", "always")
    request_stop(own_redis)
    location = own_redis.url(prefix="kept")
    writer, reader = open_writer(location, 64), open_reader(location)
    for number in range(3):
        writer.insert(job(number, idempotency_key=f"key{number}"))
    writer.commit()
    sink = writer.open_output(job(0).id)
    sink.write(bytes(range(200)))
    own_redis.stop(signal.SIGKILL)
    own_redis.restart()
    assert [record.id for record in reader.list("alice", None, 10)] == [job(2).id, job(1).id, job(0).id]
    assert writer.find_by_key("alice", "key1").id == job(1).id
    chunk = reader.read_output(job(0), 0, None)
    assert (chunk.total, text(chunk)[:32]) == (200, bytes(range(32)))
    sink.write(b"more")
    writer.insert(job(3))
    writer.commit()
    assert reader.read_output(job(0), 200, None).parts[-1].data == b"more"
    assert [record.id for record in writer.unsettled()] == [job(number).id for number in range(4)]
    reader.close()
    writer.close()


def test_output_written_while_redis_is_down_is_held_back_and_kept_as_the_local_store_keeps_it(tmp_path, own_redis):
    """Bytes written while Redis is down wait in the writer, only what the limits keep (the head and the tail so
    far), and are sent when it is back, by a write or a commit: then the output reads as the local store's."""
    local = LocalBackend(tmp_path / "local")
    local_writer, local_reader = local.writer(OutputLimits.for_cap(64)), local.reader()
    location = own_redis.url(prefix="held")
    writer, reader = open_writer(location, 64), open_reader(location)
    sinks = {0: [local_writer.open_output(job(0).id), writer.open_output(job(0).id)]}
    stream = [bytes([number]) * 7 for number in range(60)]  # 420 bytes: segments fall out of the tail meanwhile
    for number, data in enumerate(stream):
        if number == 3:
            own_redis.stop()  # job 1's output is opened while Redis is down, as a queued job's may be
            sinks[1] = [local_writer.open_output(job(1).id), writer.open_output(job(1).id)]
        for sink in (sink for pair in sinks.values() for sink in pair):
            sink.write(data)
        if number == 50:
            assert writer.holding_back()
            own_redis.restart()
    writer.commit()
    assert not writer.holding_back()
    for record in (job(0), job(1)):
        for offset in (0, 30, 200, 400):
            assert reader.read_output(record, offset, None) == local_reader.read_output(record, offset, None)
    for store in (reader, writer, local_reader, local_writer):
        store.close()


def test_a_job_waiting_on_one_host_is_taken_over_by_another_once_and_never_starts_on_the_first(redis_location):
    first, second = open_writer(redis_location, MIB, "first"), open_writer(redis_location, MIB, "second")
    first.insert(job(1))
    first.commit()
    assert second.adopt(job(1).id, "bob", "first") is None  # another user's job is no job
    taken = second.adopt(job(1).id, "alice", "first")
    assert (taken.host, taken.status) == ("second", JobStatus.CREATED)
    assert second.adopt(job(1).id, "alice", "first") is None  # taken already
    assert [record.id for record in second.unsettled()] == [job(1).id] and first.unsettled() == []
    assert not first.claim(replace(job(1), host="first", status=JobStatus.RUNNING))
    assert second.claim(replace(taken, status=JobStatus.RUNNING, started_at=5.0))
    reader = open_reader(redis_location)
    assert reader.get(job(1).id, "alice").status is JobStatus.RUNNING
    assert second.adopt(job(1).id, "alice", "second") is None  # started: not waiting any more
    for store in (first, second, reader):
        store.close()


def test_two_prefixes_are_two_stores(redis_server):
    first, second = redis_server.url(prefix="team-a"), redis_server.url(prefix="team-b")
    writers = [open_writer(first, MIB), open_writer(second, MIB)]
    readers = [open_reader(first), open_reader(second)]
    writers[0].insert(job(1, idempotency_key="k", status=JobStatus.FINISHED, ended_at=5.0))
    writers[0].commit()
    writers[0].open_output(job(1).id).write(b"a's")
    assert readers[1].get(job(1).id, "alice") is None and readers[1].list("alice", None, 10) == []
    assert writers[1].find_by_key("alice", "k") is None and readers[1].read_output(job(1), 0, None).total == 0
    writers[1].insert(replace(job(1, idempotency_key="k"), command="b's own"))  # the same ID and key, elsewhere
    writers[1].commit()
    writers[1].open_output(job(1).id).write(b"b's output")
    assert writers[1].prune(older_than=10.0, keep_per_owner=0) == 0  # b's job is not final; a's is not b's
    assert readers[0].get(job(1).id, "alice").command == "echo 1"
    assert text(readers[0].read_output(job(1), 0, None)) == b"a's"
    assert writers[0].prune(older_than=10.0, keep_per_owner=0) == 1
    assert readers[1].get(job(1).id, "alice").command == "b's own"
    assert text(readers[1].read_output(job(1), 0, None)) == b"b's output"
    for store in (*readers, *writers):
        store.close()


def test_a_user_whose_acl_allows_only_its_prefix_can_do_everything(redis_server):
    """Every key the store touches is under its prefix: an ACL user limited to those keys meets no NOPERM."""
    with redis_server.client() as admin:
        admin.acl_setuser("agent", enabled=True, passwords=["+agent-secret"], keys=["acl-prefix:*"],
                          commands=["+@all", "-@dangerous", "+info"], reset_keys=True)
    location = redis_server.url(prefix="acl-prefix", user="agent", password="agent-secret")
    writer, reader = open_writer(location, 64), open_reader(location)
    writer.insert(job(1, idempotency_key="k", labels=("x",)))
    writer.insert(job(2, status=JobStatus.FINISHED, ended_at=5.0))
    writer.commit()
    writer.open_output(job(1).id).write(bytes(300))
    assert writer.find_by_key("alice", "k").id == job(1).id and len(writer.unsettled()) == 1
    assert [record.id for record in reader.list("alice", JobStatus.CREATED, 10, "x")] == [job(1).id]
    assert reader.read_output(job(1), 0, None).total == 300
    assert writer.prune(older_than=10.0, keep_per_owner=0) == 1
    assert writer.free_reserve()
    outside = redis_server.url(prefix="another-prefix", user="agent", password="agent-secret")
    with pytest.raises(StoreError, match="may not do this"):
        open_writer(outside, MIB)
    reader.close()
    writer.close()


def test_a_full_redis_is_a_store_error_until_the_reserve_is_released(own_redis):
    """As on a full disk: records cannot be written, the writer releases the memory held back, and the jobs'
    records are written after all."""
    location = own_redis.url(prefix="full")
    writer = open_writer(location, 64 * MIB)
    sink = writer.open_output(job(0).id)
    with own_redis.client() as admin:
        used = admin.info("memory")["used_memory"]
        admin.config_set("maxmemory", used + 256 * 1024)
        admin.config_set("maxmemory-policy", "noeviction")
    with pytest.raises(OutputWriteError, match="out of memory"):
        for _ in range(100):
            sink.write(bytes(64 * 1024))
    # Full for good: half the 1 MiB reserve under what Redis uses once the refused writes' query buffers are
    # freed (Redis shrinks them in its cron, a moment or, on a loaded machine, seconds later): measured before
    # that, the freeing alone made room for the record, and the commit expected refused went through.
    with own_redis.client() as admin:
        poll_until(lambda: _buffers_freed(admin), timeout=60, message="Redis to free the clients' query buffers")
        admin.config_set("maxmemory", admin.info("memory")["used_memory"] - 512 * 1024)
    writer.insert(job(1))
    with pytest.raises(StoreError, match=r"^cannot record the jobs: Redis at .* is out of memory"):
        writer.commit()
    writer.rollback()
    assert writer.free_reserve() and not writer.free_reserve()
    writer.insert(job(1))
    writer.commit()
    assert writer.get(job(1).id, "alice") == job(1)
    writer.close()


def _buffers_freed(admin) -> bool:
    """Whether no client of Redis holds more than a small query or output buffer."""
    return all(int(client["qbuf"]) + int(client["qbuf-free"]) <= 32 * 1024 and int(client["omem"]) == 0
               for client in admin.client_list())


def test_a_commit_another_writer_made_impossible_applies_nothing(redis_location):
    late, early = open_writer(redis_location, MIB), open_writer(redis_location, MIB)
    reader = open_reader(redis_location)
    late.insert(job(1))
    late.insert(job(2, idempotency_key="k"))
    late.save(job(9, status=JobStatus.FINISHED))
    early.insert(job(3, idempotency_key="k"))
    early.commit()
    with pytest.raises(StoreError, match="unique per owner"):
        late.commit()
    late.rollback()
    assert [record.id for record in reader.list("alice", None, 10)] == [job(3).id]
    assert late.find_by_key("alice", "k").id == job(3).id
    for store in (late, early, reader):
        store.close()


def test_a_save_applies_only_while_the_record_is_the_hosts_unfinished_job(redis_location, caplog):
    """A host's supervisor back from a lapsed lease cannot record its job's end over the lost-host sweep's: a save
    is refused once the stored record is final or another host's, and logged once per job."""
    supervisor, sweeper = open_writer(redis_location, MIB, "h1"), open_writer(redis_location, MIB, "h1")
    reader = open_reader(redis_location)
    supervisor.insert(job(1, status=JobStatus.RUNNING))
    supervisor.insert(job(2, status=JobStatus.RUNNING))
    supervisor.insert(job(3, status=JobStatus.RUNNING))
    supervisor.commit()
    sweeper.save(job(1, status=JobStatus.ERROR, host="h1", reason="host h1 lost", ended_at=5.0))
    sweeper.commit()
    for _ in range(2):
        supervisor.save(job(1, status=JobStatus.STOPPED, host="h1", ended_at=6.0))
        supervisor.save(job(2, status=JobStatus.FINISHED, host="h1", ended_at=6.0))  # still its own: saved
        supervisor.commit()
    assert reader.get(job(1).id, "alice") == job(1, status=JobStatus.ERROR, host="h1", reason="host h1 lost",
                                                   ended_at=5.0)
    assert reader.get(job(2).id, "alice").status is JobStatus.FINISHED
    assert [record.message for record in caplog.records].count(
        f"job {job(1).id}: not recorded as stopped: its record is no longer an unfinished job of host h1 "
        "(settled elsewhere, as a lost host's job is)") == 1
    other = open_writer(redis_location, MIB, "h2")
    other.save(job(3, status=JobStatus.FINISHED, host="h2", ended_at=6.0))  # another host's job
    other.commit()
    assert reader.get(job(3).id, "alice") == job(3, status=JobStatus.RUNNING, host="h1")
    for store in (supervisor, sweeper, other, reader):
        store.close()


def test_a_commit_raced_by_another_writer_is_tried_again(redis_location, monkeypatch):
    """Another writer's commit between this one's WATCH and EXEC makes EXEC do nothing; the commit checks the
    keys again and goes through, after the other one."""
    writer, other = open_writer(redis_location, MIB), open_writer(redis_location, MIB)
    reader = open_reader(redis_location)
    checked = RedisJobWriter._number_new_jobs
    raced = []

    def racing(self, transaction):
        numbers = checked(self, transaction)
        if self is writer and not raced:
            raced.append(True)
            other.insert(job(2, idempotency_key="theirs"))
            other.commit()
        return numbers

    monkeypatch.setattr(RedisJobWriter, "_number_new_jobs", racing)
    writer.insert(job(1, idempotency_key="mine"))
    writer.commit()
    assert raced and [record.id for record in reader.list("alice", None, 10)] == [job(1).id, job(2).id]
    for store in (writer, other, reader):
        store.close()


def test_jobs_of_several_writers_are_listed_in_the_order_they_were_committed(redis_location):
    writers, reader = [open_writer(redis_location, MIB) for _ in range(3)], open_reader(redis_location)
    for number in range(9):
        writers[number % 3].insert(job(number))
        writers[number % 3].commit()
    assert [record.id for record in reader.list("alice", None, 20)] == [job(number).id for number in range(8, -1, -1)]
    for store in (*writers, reader):
        store.close()


def test_rediss_with_the_ca_named_in_the_location(tmp_path):
    server, port, ca = start_tls_redis(tmp_path)
    try:
        location = f"rediss://:{server.password}@127.0.0.1:{port}/0?prefix=tls&ssl_ca_certs={ca}"
        writer, reader = open_writer(location, MIB), open_reader(location)
        writer.insert(job(1))
        writer.commit()
        assert reader.get(job(1).id, "alice") == job(1)
        reader.close()
        writer.close()
        with pytest.raises(StoreError, match="cannot be reached"):  # the system's CAs do not know this one
            open_reader(f"rediss://:{server.password}@127.0.0.1:{port}/0")
    finally:
        server.stop()
