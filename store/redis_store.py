"""The Redis back end of the store: the records and output of the jobs of several hosts in one Redis, with the
local back end's semantics (local.py, records.py), so that neither the front end nor the supervisor can tell
the two apart.

Keys, all under the location's prefix (redis_connection.py names them):

    job:<id>           the record, as JSON (every field of JobRecord)
    jobs:<owner>       sorted set: the owner's jobs by sequence number (lists are newest first)
    keys:<owner>       hash: idempotency key → job ID (one job per key and owner)
    unsettled          sorted set: created and running jobs by sequence number
    unsettled-on:<host>  sorted set: the same, of one host (placement counts them)
    ended-at           sorted set: final jobs by the time they ended (pruning by age)
    owners             set: every owner that has had jobs (pruning by count)
    sequence           counter: the order jobs were created in, across every writer
    reserve            1 MiB held back, deleted when Redis is full so the jobs running then can still be recorded
    output:<id>, piece:<n>:<id>    the job's output (redis_output.py)

Writes wait in a batch until `commit`, which sends them as one MULTI/EXEC: readers see all of a batch or none
of it. A batch that creates jobs first WATCHes their records and their owners' keys and checks that both are
free; if another writer changes either before EXEC, EXEC does nothing and the commit is tried again. A save
replaces a record only while the stored one is still the writer's host's unfinished (created or running) job, in
one Lua script (_GUARDED_SAVE): a job settled meanwhile by another hand, as the lost-host sweep's "host NAME lost"
settles one, keeps that ending; the supervisor of a host back from a lapsed lease cannot record its own over it.
Before a job's first process starts, its host claims it with the same guarded save, at once (`claim`): a job
waiting on a lost host can be taken over by another (`adopt`, a compare-and-set of the record that moves it to
the other host's index) only while its record says `created`, so it starts on one host only.
Output written while Redis cannot be reached is held back in memory (at most what the limits keep) and sent
by the next commit, before its batch. Every Redis error is a StoreError with one sentence, after at most the
connection's timeouts. Needs Redis 6.2 or
later (ZDIFF); a single Redis, not Redis Cluster (a transaction spans many keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import redis
from redis.client import Pipeline
from workerctl.protocol.jobs import JobStatus, stored_before
from workerctl.store.interface import JobRecord, KeyTaken, OutputWriteError, StoreError
from workerctl.store.layout import RESERVE_BYTES
from workerctl.store.output_log import OutputLimits
from workerctl.store.redis_connection import check_server
from workerctl.store.redis_output import HeldBack, OutputHeldBack, RedisOutputSink, output_keys
from workerctl.store.redis_records import RedisStoreBase, decode_record, encode_record

log = logging.getLogger(__name__)

_UNSETTLED = (JobStatus.CREATED, JobStatus.RUNNING)
# For the guarded save: the stored statuses a record may have when it is saved with each status, as ",a,b,".
_STORED_BEFORE = {status: f",{','.join(sorted(stored_before(status)))}," for status in JobStatus}
_COMMIT_ATTEMPTS = 20  # before giving up on a batch whose jobs other writers keep changing

# Replace the record (KEYS[1]) with ARGV[1] only if it still exists, is the host ARGV[3]'s ("" for none), and
# its status may move to the new one (one of ARGV[6], ",created,running," say: never from a final one); if the
# new one is final (ARGV[4]), move job ARGV[2] from the unsettled indexes (KEYS[2], and the host's, KEYS[4]) to
# the ended-at index (KEYS[3]) with score ARGV[5] ("" for none). 1 if saved, 0 if
# there is no record, -1 if it is no longer the host's job in a status that may move to the new one.
_GUARDED_SAVE = """
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local record = cjson.decode(stored)
local host = record.host
if host == nil or host == cjson.null then host = '' end
if host ~= ARGV[3] or not string.find(ARGV[6], ',' .. record.status .. ',', 1, true) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
    redis.call('ZREM', KEYS[2], ARGV[2])
    redis.call('ZREM', KEYS[4], ARGV[2])
    if ARGV[5] == '' then redis.call('ZREM', KEYS[3], ARGV[2]) else redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2]) end
end
return 1
"""

# Replace the record (KEYS[1]) with ARGV[2] only if it is still ARGV[1], and move job ARGV[3] from the index
# KEYS[2] to KEYS[3] with its score in KEYS[4]. 1 if replaced, 0 if the record had changed.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
local score = redis.call('ZSCORE', KEYS[4], ARGV[3])
if score then redis.call('ZADD', KEYS[3], score, ARGV[3]) end
return 1
"""

# Replace the record (KEYS[1]) with ARGV[2] only if it is still ARGV[1], and move job ARGV[3] out of the unsettled
# indexes (KEYS[2], KEYS[3]) into the ended-at index (KEYS[4]) with score ARGV[4]. 1 if replaced, 0 if the record
# had changed.
_SETTLE_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
return 1
"""

# One write of a batch, queued into the transaction when it is committed, with the sequence numbers given to
# the batch's new jobs.
_QueuedWrite = Callable[[Pipeline, dict[str, int]], None]


class RedisJobWriter(RedisStoreBase):
    """The supervisor's writes (a JobWriter). Its own `get` and `find_by_key` see its batch before the commit,
    as an open SQLite transaction does."""

    def __init__(self, location: str, output_limits: OutputLimits, host: str | None = None) -> None:
        super().__init__(location)
        self.output_limits = output_limits
        self.host = host  # new jobs are marked with it; unsettled() is only its jobs
        self._batch: list[_QueuedWrite] = []
        self._pending: dict[str, str | None] = {}  # the batch's records by job ID, as JSON; None once deleted
        self._inserted: list[str] = []
        self._claimed: dict[tuple[str, str], str] = {}  # (owner, idempotency key) → job ID, for new jobs
        self._guarded: list[tuple[int, str, JobStatus]] = []  # each save's place in the transaction, job, status
        self._refused: set[str] = set()  # jobs whose save was refused (logged once each)
        self._held_back = HeldBack()  # outputs with bytes held back while Redis was unreachable
        try:
            check_server(self._client, self.location.where)
            with self._storing("hold back memory for the records"):
                self._client.set(self.keys.reserve, bytes(RESERVE_BYTES), nx=True)
        except StoreError:
            self._client.close()
            raise

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        if job_id in self._pending:
            text = self._pending[job_id]
            record = decode_record(text) if text is not None else None
            return record if record is not None and record.owner == owner else None
        return super().get(job_id, owner)

    def find_by_key(self, owner: str, key: str) -> JobRecord | None:
        """The owner's job started with idempotency key `key`."""
        holder = self._key_holder(owner, key, "read the job")
        return self.get(holder, owner) if holder is not None else None

    def unsettled(self) -> list[JobRecord]:
        """Jobs an earlier run of this writer's host left created or running, oldest first: another host's jobs
        are its own to settle (or, once its lease lapses, the lost-host sweep's)."""
        with self._storing("read the unsettled jobs"):
            records = self._records(self._client.zrange(self.keys.unsettled_on(self.host), 0, -1))
        return [record for record in records if record.status in _UNSETTLED and record.host == self.host]

    def insert(self, record: JobRecord) -> None:
        if record.host is None:
            record.host = self.host
        key = record.idempotency_key
        if key is not None:
            holder = self._key_holder(record.owner, key, "record the job")
            if holder is not None and holder != record.id:
                raise KeyTaken(_not_unique(record.owner, key, holder))
            self._claimed[(record.owner, key)] = record.id
        text = self._stage(record)
        self._inserted.append(record.id)
        self._batch.append(partial(self._queue_insert, record.id, record.owner, record.host, key, text,
                                   record.status, record.ended_at))

    def save(self, record: JobRecord) -> None:
        """Write every field of an existing record."""
        text = self._stage(record)
        self._batch.append(partial(self._queue_save, record.id, text, record.status, record.ended_at))

    def commit(self) -> None:
        """Send the output held back, then the batch; StoreError if either cannot be stored (the batch stays
        until `rollback`, the output until it is sent)."""
        self._send_held_output()
        if not self._batch:
            return
        with self._storing("record the jobs"):
            for _ in range(_COMMIT_ATTEMPTS):
                try:
                    self._commit_once()
                    break
                except redis.WatchError:  # another writer changed the new jobs' keys: check them again
                    continue
            else:
                raise StoreError("cannot record the jobs: other writers kept changing the same jobs")
        self._forget_batch()

    def rollback(self) -> None:
        """Drop the batch, if a failed commit left it."""
        self._forget_batch()

    def claim(self, record: JobRecord) -> bool:
        """Save the record now if the stored one is still this host's unfinished job (the guarded save, outside
        the batch); whether it was."""
        with self._storing("record the job's start"):
            saved = self._guarded_save(self._client, record.id, encode_record(record), record.status, record.ended_at)
        return saved == 1

    def adopt(self, job_id: str, owner: str, from_host: str) -> JobRecord | None:
        with self._storing("take the job over"):
            waiting = self._waiting(job_id, owner, from_host)
            if waiting is None:
                return None
            text, record = waiting
            record.host = self.host
            swapped = self._client.eval(_SWAP, 4, self.keys.job(job_id), self.keys.unsettled_on(from_host),
                                        self.keys.unsettled_on(self.host), self.keys.unsettled, text,
                                        encode_record(record), job_id)
        return record if swapped == 1 else None

    def stop_waiting(self, job_id: str, owner: str, host: str) -> JobRecord | None:
        """Stop the owner's job while it waits (created, never started) on `host`, at once, without that host:
        it never starts after (its host's claim is refused). Its record, or None if it is no longer waiting
        there (started, ended, or taken over)."""
        with self._storing("stop the job"):
            waiting = self._waiting(job_id, owner, host)
            if waiting is None:
                return None
            text, record = waiting
            record.move_to(JobStatus.STOPPED)
            swapped = self._client.eval(_SETTLE_SWAP, 4, self.keys.job(job_id), self.keys.unsettled,
                                        self.keys.unsettled_on(host), self.keys.ended_at, text, encode_record(record),
                                        job_id, repr(record.ended_at))
        return record if swapped == 1 else None

    def _waiting(self, job_id: str, owner: str, host: str) -> tuple[bytes, JobRecord] | None:
        """The stored text and record of the owner's job if it waits (created) on `host`."""
        text = self._client.get(self.keys.job(job_id))
        record = decode_record(text) if text is not None else None
        if record is None or record.owner != owner or record.host != host or record.status is not JobStatus.CREATED:
            return None
        return text, record

    def open_output(self, job_id: str) -> RedisOutputSink:
        return RedisOutputSink(self._client, self.keys, self.location.where, job_id, self.output_limits,
                               self._held_back)

    def reopen_output(self, job_id: str) -> RedisOutputSink:
        return RedisOutputSink.reopen(self._client, self.keys, self.location.where, job_id, self.output_limits,
                                      self._held_back)

    def holding_back(self) -> bool:
        """Whether output written while Redis could not be reached waits to be sent by a commit."""
        return bool(self._held_back.sinks)

    def prune(self, older_than: float, keep_per_owner: int) -> int:
        """Delete final jobs that ended before `older_than`, or beyond the newest `keep_per_owner` of their
        owner, with their output; how many were deleted."""
        try:
            with self._storing("prune old jobs"):
                expired = sorted(self._expired(older_than, keep_per_owner))
                found = self._client.pipeline(transaction=False)
                for job_id in expired:
                    found.get(self.keys.job(job_id))
                    found.hmget(self.keys.output(job_id), "limits", "total")
                answers = found.execute()
            deleted = 0
            for job_id, text, (limits, total) in zip(expired, answers[::2], answers[1::2]):
                record = decode_record(text) if text is not None else None
                if record is None or not record.status.is_final:  # an index entry of a record gone since
                    self._batch.append(partial(self._queue_forget, job_id))
                    continue
                self._pending[job_id] = None
                self._batch.append(partial(self._queue_delete, record, output_keys(self.keys, job_id, limits, total)))
                deleted += 1
            self.commit()
        except StoreError:
            self.rollback()
            raise
        return deleted

    def free_reserve(self) -> bool:
        """Release the memory held back for the records; False if there is none (or Redis cannot be reached)."""
        try:
            return bool(self._client.delete(self.keys.reserve))
        except redis.RedisError:
            return False

    def close(self) -> None:
        try:
            self.commit()
        except StoreError as error:  # Redis down at the end: what was held back is lost
            log.error("%s", error)
        finally:
            super().close()

    def _send_held_output(self) -> None:
        # Before the records: a reader that sees a job's final status sees all the output it kept.
        for sink in list(self._held_back.sinks):
            try:
                sink.flush()
            except OutputHeldBack as error:
                raise StoreError(f"cannot record the jobs' output: {error}") from None
            except OutputWriteError as error:
                self._held_back.sinks.discard(sink)
                log.error("output held back while Redis could not be reached is lost: %s", error.strerror)

    def _forget_batch(self) -> None:
        self._batch.clear()
        self._pending.clear()
        self._inserted.clear()
        self._claimed.clear()

    def _stage(self, record: JobRecord) -> str:
        text = encode_record(record)
        self._pending[record.id] = text
        return text

    def _key_holder(self, owner: str, key: str, what: str) -> str | None:
        """The job that has the owner's idempotency key, in the batch or in Redis."""
        holder = self._claimed.get((owner, key))
        if holder is None:
            with self._storing(what):
                stored = self._client.hget(self.keys.keys_of(owner), key)
            holder = stored.decode() if stored is not None else None
        return None if holder is not None and self._deleted(holder) else holder

    def _deleted(self, job_id: str) -> bool:
        """Whether the batch deletes the job (its key is free then, as in a transaction that deleted it)."""
        return job_id in self._pending and self._pending[job_id] is None

    def _commit_once(self) -> None:
        self._guarded.clear()
        with self._client.pipeline(transaction=True) as transaction:
            numbers = self._number_new_jobs(transaction) if self._inserted else {}
            transaction.multi()
            for queue in self._batch:
                queue(transaction, numbers)
            results = transaction.execute()
        for place, job_id, status in self._guarded:
            if results[place] == -1 and job_id not in self._refused:
                self._refused.add(job_id)
                log.warning("job %s: not recorded as %s: its record is no longer an unfinished job of host %s "
                            "(settled elsewhere, as a lost host's job is)", job_id, status.value, self.host)

    def _number_new_jobs(self, transaction: Pipeline) -> dict[str, int]:
        """WATCH the new jobs' records and their owners' keys, check both are free, and give each new job a
        sequence number."""
        owners = {owner for owner, _ in self._claimed}
        transaction.watch(*(self.keys.job(job_id) for job_id in self._inserted),
                          *(self.keys.keys_of(owner) for owner in owners))
        check = self._client.pipeline(transaction=False)
        check.exists(*(self.keys.job(job_id) for job_id in self._inserted))
        for owner, key in self._claimed:
            check.hget(self.keys.keys_of(owner), key)
        check.incrby(self.keys.sequence, len(self._inserted))
        existing, *holders, last = check.execute()
        if existing:
            raise StoreError("cannot record the jobs: a job with the same ID exists already")
        for ((owner, key), job_id), holder in zip(self._claimed.items(), holders):
            if holder is not None and holder.decode() != job_id and not self._deleted(holder.decode()):
                raise KeyTaken(_not_unique(owner, key, holder.decode()))
        first = last - len(self._inserted) + 1
        return {job_id: first + index for index, job_id in enumerate(self._inserted)}

    def _expired(self, older_than: float, keep_per_owner: int) -> set[str]:
        """IDs of final jobs that ended before `older_than`, or beyond the newest `keep_per_owner` final jobs
        of their owner."""
        expired = {job_id.decode() for job_id in self._client.zrangebyscore(self.keys.ended_at, "-inf",
                                                                             f"({older_than!r}")}
        owners = [owner.decode() for owner in self._client.smembers(self.keys.owners)]
        sizes = self._client.pipeline(transaction=False)
        for owner in owners:
            sizes.zcard(self.keys.jobs_of(owner))
        crowded = [owner for owner, size in zip(owners, sizes.execute()) if size > keep_per_owner]
        ranked = self._client.pipeline(transaction=False)
        for owner in crowded:  # their final jobs, oldest first: all their jobs less the unsettled ones
            ranked.zdiff([self.keys.jobs_of(owner), self.keys.unsettled])
        for final in ranked.execute():
            expired.update(job_id.decode() for job_id in final[:max(len(final) - keep_per_owner, 0)])
        return expired

    def _queue_insert(self, job_id: str, owner: str, host: str | None, key: str | None, text: str,
                      status: JobStatus, ended_at: float | None, transaction: Pipeline,
                      numbers: dict[str, int]) -> None:
        transaction.set(self.keys.job(job_id), text, nx=True)
        transaction.zadd(self.keys.jobs_of(owner), {job_id: numbers[job_id]})
        transaction.sadd(self.keys.owners, owner)
        if key is not None:
            transaction.hset(self.keys.keys_of(owner), key, job_id)
        if status in _UNSETTLED:
            transaction.zadd(self.keys.unsettled, {job_id: numbers[job_id]})
            transaction.zadd(self.keys.unsettled_on(host), {job_id: numbers[job_id]})
        else:
            self._queue_ended(job_id, ended_at, transaction)

    def _queue_save(self, job_id: str, text: str, status: JobStatus, ended_at: float | None,
                    transaction: Pipeline, numbers: dict[str, int]) -> None:
        self._guarded.append((len(transaction.command_stack), job_id, status))
        self._guarded_save(transaction, job_id, text, status, ended_at)

    def _guarded_save(self, client: redis.Redis | Pipeline, job_id: str, text: str, status: JobStatus,
                      ended_at: float | None) -> int | Pipeline:
        # Statuses never go back, so an unsettled job is in its index already.
        settled = "1" if status not in _UNSETTLED else "0"
        return client.eval(_GUARDED_SAVE, 4, self.keys.job(job_id), self.keys.unsettled, self.keys.ended_at,
                           self.keys.unsettled_on(self.host), text, job_id, self.host or "", settled,
                           "" if ended_at is None else repr(ended_at), _STORED_BEFORE[status])

    def _queue_ended(self, job_id: str, ended_at: float | None, transaction: Pipeline) -> None:
        transaction.zrem(self.keys.unsettled, job_id)
        if ended_at is None:
            transaction.zrem(self.keys.ended_at, job_id)
        else:
            transaction.zadd(self.keys.ended_at, {job_id: ended_at})

    def _queue_delete(self, record: JobRecord, output: list[str], transaction: Pipeline,
                      numbers: dict[str, int]) -> None:
        transaction.delete(self.keys.job(record.id), *output)
        transaction.zrem(self.keys.jobs_of(record.owner), record.id)
        self._queue_forget(record.id, transaction, numbers)
        if record.idempotency_key is not None:
            transaction.hdel(self.keys.keys_of(record.owner), record.idempotency_key)

    def _queue_forget(self, job_id: str, transaction: Pipeline, numbers: dict[str, int]) -> None:
        transaction.zrem(self.keys.unsettled, job_id)
        transaction.zrem(self.keys.ended_at, job_id)


def _not_unique(owner: str, key: str, holder: str) -> str:
    return f"cannot record the job: idempotency keys are unique per owner, and {owner}'s {key!r} is job {holder}'s"
