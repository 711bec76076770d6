"""A job's phases in the supervisor: the only moves allowed, and what each records."""

from __future__ import annotations

import asyncio

import pytest
from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import JobRecord
from workerctl.supervisor.exits import Exit
from workerctl.supervisor.job import EndRequest, Job, Launched, Phase, PhaseError


class Nothing:
    """Stands in for what a launched job holds (an output sink, a scope); nothing here touches it."""


def in_loop(test):
    return lambda: asyncio.run(test())


def new_job() -> Job:
    return Job(JobRecord("jaaaaaaaaaaaaaaaaaaaaaaaaaa", "alice", "true", JobStatus.CREATED, 0.0))


def launched() -> Launched:
    return Launched(123, Nothing(), None, Nothing(), lambda: None)  # type: ignore[arg-type]


@in_loop
async def test_a_job_runs_ends_and_settles_once():
    job = new_job()
    assert job.phase is Phase.QUEUED and not job.main_unreaped
    job.start_running(launched())
    assert (job.phase, job.record.status) == (Phase.RUNNING, JobStatus.RUNNING) and job.record.started_at
    assert job.main_unreaped
    assert job.main_exited(Exit(123, 0, None))
    assert job.phase is Phase.ENDING and not job.main_unreaped
    job.settle(JobStatus.FINISHED, exit_code=0)
    assert (job.phase, job.record.status, job.record.exit_code) == (Phase.SETTLED, JobStatus.FINISHED, 0)
    assert job.settled.result() is JobStatus.FINISHED and job.record.ended_at


@in_loop
async def test_the_first_reason_to_end_a_job_stands():
    job = new_job()
    job.start_running(launched())
    assert job.request_end(EndRequest(JobStatus.STOPPED))
    assert not job.request_end(EndRequest(JobStatus.ERROR, "time limit"))
    assert not job.main_exited(Exit(123, None, 15))  # ending already: its exit is noted, nothing more
    assert job.end_request == EndRequest(JobStatus.STOPPED) and job.main_exit == Exit(123, None, 15)


@in_loop
async def test_a_job_whose_shell_exited_is_not_ended_by_a_later_request():
    job = new_job()
    job.start_running(launched())
    job.main_exited(Exit(123, 3, None))
    assert not job.request_end(EndRequest(JobStatus.STOPPED)) and job.end_request is None


@in_loop
async def test_a_queued_job_may_settle_without_running():
    job = new_job()
    job.settle(JobStatus.STOPPED)
    assert job.phase is Phase.SETTLED and job.record.started_at is None


@in_loop
async def test_any_other_move_is_a_bug():
    job = new_job()
    with pytest.raises(PhaseError):
        job.main_exited(Exit(1, 0, None))  # a queued job has no process
    with pytest.raises(PhaseError):
        job.request_end(EndRequest(JobStatus.STOPPED))  # nor anything to end: it is settled at once instead
    job.settle(JobStatus.ERROR, reason="could not start")
    with pytest.raises(PhaseError):
        job.start_running(launched())
    with pytest.raises(PhaseError):
        job.settle(JobStatus.STOPPED)
