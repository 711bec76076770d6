"""Admission without processes: idempotency keys, the per-user queue limit, and the pool's fairness."""

from __future__ import annotations

import pytest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus, is_job_id
from workerctl.protocol.limits import JobLimits
from workerctl.protocol.messages import StartJob
from workerctl.store.interface import JobRecord
from workerctl.supervisor.admission import Admission, ExistingJob, LimitsPolicy, NewJob
from workerctl.supervisor.pool import JobPool

POLICY = LimitsPolicy(timeout_seconds=60.0, longest_timeout_seconds=600.0, memory_bytes=2**30, cpus=1.0,
                      processes=1024)


def admission(max_queued=10, recorded=()):
    by_key = {(record.owner, record.idempotency_key): record for record in recorded}
    return Admission(JobPool(max_running=1, max_per_user=1), max_queued, lambda owner, key: by_key.get((owner, key)),
                     POLICY)


def start(user="alice", command="true", key=None, request_id=1, limits=None):
    return StartJob(request_id, user, command, key, limits)


def test_a_start_becomes_a_new_created_job():
    [verdict] = admission().decide([start(command="ls -l", key="k")])
    assert isinstance(verdict, NewJob)
    assert is_job_id(verdict.record.id) and verdict.record.status is JobStatus.CREATED
    assert (verdict.record.owner, verdict.record.command, verdict.record.idempotency_key) == ("alice", "ls -l", "k")


def test_a_key_already_used_for_the_same_command_returns_that_job():
    earlier = JobRecord("jbbbbbbbbbbbbbbbbbbbbbbbbbb", "alice", "true", JobStatus.FINISHED, 0.0, idempotency_key="k")
    assert admission(recorded=[earlier]).decide([start(key="k")]) == [ExistingJob(earlier)]


def test_a_key_already_used_for_another_command_is_a_conflict():
    earlier = JobRecord("jbbbbbbbbbbbbbbbbbbbbbbbbbb", "alice", "true", JobStatus.FINISHED, 0.0, idempotency_key="k")
    [verdict] = admission(recorded=[earlier]).decide([start(command="false", key="k")])
    assert isinstance(verdict, ApiError) and verdict.kind is ErrorKind.CONFLICT and earlier.id in verdict.message


def test_keys_are_per_user():
    earlier = JobRecord("jbbbbbbbbbbbbbbbbbbbbbbbbbb", "alice", "true", JobStatus.FINISHED, 0.0, idempotency_key="k")
    [verdict] = admission(recorded=[earlier]).decide([start(user="bob", key="k")])
    assert isinstance(verdict, NewJob)


def test_two_starts_with_one_key_in_one_batch_make_one_job():
    first, second = admission().decide([start(key="k"), start(key="k", request_id=2)])
    assert isinstance(first, NewJob) and second == ExistingJob(first.record)


def test_past_the_queue_limit_a_start_is_refused_and_counted_per_user():
    verdicts = admission(max_queued=2).decide([start(), start(), start(), start(user="bob")])
    assert [type(verdict) for verdict in verdicts] == [NewJob, NewJob, ApiError, NewJob]
    assert verdicts[2].kind is ErrorKind.QUEUE_FULL


def test_jobs_already_waiting_count_against_the_queue_limit():
    pool_admission = admission(max_queued=2)
    pool_admission.pool.add("j1", "alice")
    pool_admission.pool.add("j2", "alice")
    [verdict] = pool_admission.decide([start()])
    assert isinstance(verdict, ApiError) and verdict.kind is ErrorKind.QUEUE_FULL


def test_pool_gives_a_free_slot_to_the_user_with_fewest_running():
    pool = JobPool(max_running=2, max_per_user=2)
    for job_id in ("a1", "a2", "a3"):
        pool.add(job_id, "alice")
    assert pool.take_runnable() == ["a1", "a2"]
    pool.add("b1", "bob")
    pool.release("a1")
    assert pool.take_runnable() == ["b1"]
    pool.release("a2")
    assert pool.take_runnable() == ["a3"]


def test_pool_respects_both_limits_and_withdraws_waiting_jobs():
    pool = JobPool(max_running=3, max_per_user=1)
    for number, user in enumerate(("alice", "alice", "bob", "carol", "dave")):
        pool.add(f"{user}-{number}", user)
    assert pool.take_runnable() == ["alice-0", "bob-2", "carol-3"]
    assert pool.withdraw("alice-1", "alice") and not pool.withdraw("alice-1", "alice")
    assert not pool.withdraw("alice-0", "alice")  # running, not waiting
    pool.release("bob-2")
    assert pool.take_runnable() == ["dave-4"]




def test_a_new_job_gets_the_servers_limits_unless_it_asks_for_others_within_them():
    [default] = admission().decide([start()])
    assert default.record.limits == JobLimits(60.0, 2**30, 1.0, 1024)
    [asked] = admission().decide([start(limits=JobLimits(timeout_seconds=300, memory_bytes=2**28, cpus=0.5))])
    assert asked.record.limits == JobLimits(300, 2**28, 0.5, 1024)


@pytest.mark.parametrize("limits, message", [
    (JobLimits(timeout_seconds=601),
     "limits.timeoutSeconds may be at most 600 on this server (its --max-job-timeout)"),
    (JobLimits(memory_bytes=2**31),
     "limits.memoryBytes may be at most 1073741824 on this server (its --job-memory)"),
    (JobLimits(cpus=1.5), "limits.cpus may be at most 1 on this server (its --job-cpus)"),
])
def test_asking_for_more_than_the_server_allows_is_refused(limits, message):
    [verdict] = admission().decide([start(limits=limits)])
    assert isinstance(verdict, ApiError) and verdict.kind is ErrorKind.BAD_REQUEST and verdict.message == message
