"""A job's life in the supervisor, in virtual time: the time limit, the grace period and SIGKILL's escalation,
stops, the order of settling, shutdown and what an earlier run left, each checked to the exact virtual second.

The life cycle runs as in the supervisor, with a real pool, publisher and store, on a loop whose clock jumps to
the next timer whenever every task waits (virtual_time.py), over a host whose processes are simulated
(simulated_host.py). A 60 s time limit passes in a millisecond. That real processes end the same way, however
they fork, is tests/test_process_trees.py's to show.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from simulated_host import USAGE, Program, SimulatedHost
from virtual_time import in_virtual_time
from workerctl.protocol.jobs import JobStatus, new_job_id
from workerctl.protocol.limits import JobLimits
from workerctl.store.backends import open_reader, open_writer
from workerctl.store.interface import JobRecord, JobWriter, now
from workerctl.store.layout import DataLayout
from workerctl.supervisor.accounts import JobAccounts, JobUser
from workerctl.supervisor.exits import ChildExits, Exit
from workerctl.supervisor.homes import Homes
from workerctl.supervisor.job import EndRequest, Job
from workerctl.supervisor.keepers import FENCED, Ended, Ending
from workerctl.supervisor.leftovers import end_leftovers, settle_unfinished
from workerctl.supervisor.lifecycle import FENCE_REASON, JobLifecycle
from workerctl.supervisor.link import LinkListener
from workerctl.supervisor.pool import JobPool
from workerctl.supervisor.publisher import Publisher

GRACE = 5.0
MIB = 2**20
OWNER = "alice"


def at(seconds: float) -> object:
    """A virtual time, exact but for the rounding of floating point."""
    return pytest.approx(seconds, abs=1e-9)


async def until(seconds: float) -> None:
    """Let the virtual clock run to `seconds`."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(seconds - loop.time())


@dataclass
class Rig:
    """A life cycle over a simulated host, with the store, pool and publisher the supervisor gives it."""

    lifecycle: JobLifecycle
    host: SimulatedHost
    store: JobWriter
    data_dir: Path

    def start(self, command: str, timeout_seconds: float = 60.0) -> Job:
        """Record a job, as admission does, and hand it to the life cycle; it starts when the pool lets it."""
        record = JobRecord(new_job_id(), OWNER, command, JobStatus.CREATED, now(),
                           limits=JobLimits(timeout_seconds, 64 * MIB, 1.0, 100))
        self.store.insert(record)
        self.store.commit()
        self.lifecycle.add(record)
        self.lifecycle.start_runnable()
        return self.lifecycle.jobs[record.id]

    async def stored(self, job: Job) -> tuple[JobRecord, bytes]:
        """The job's record and output as committed."""
        await self.lifecycle.publisher.saved()
        record = self.store.get(job.id, OWNER)
        assert record is not None
        reader = open_reader(self.data_dir)
        try:
            return record, b"".join(part.data for part in reader.read_output(record, 0, None).parts)
        finally:
            reader.close()


@asynccontextmanager
async def rig(tmp_path: Path, programs: dict[str, Program], max_jobs: int = 4,
              kill_grace: float = GRACE) -> AsyncIterator[Rig]:
    layout = DataLayout(tmp_path / "data")
    layout.create()
    store = open_writer(layout.root, MIB)
    user = JobUser(OWNER, os.geteuid(), os.getegid())
    homes = Homes(layout, 0, bounded=False)
    homes.prepare(OWNER, user)  # here rather than in a worker thread, which virtual time would not wait for
    host = SimulatedHost(programs)
    publisher = Publisher(store, LinkListener(tmp_path / "link", b"key", lambda *_: None))
    lifecycle = JobLifecycle(host, JobPool(max_jobs, max_jobs), publisher, JobAccounts(user), homes, kill_grace)
    try:
        yield Rig(lifecycle, host, store, layout.root)
    finally:
        await publisher.saved()
        store.close()


@pytest.mark.parametrize(("limit", "said"), [(60.0, "60"), (0.25, "0.25")])
@in_virtual_time
async def test_the_time_limit_ends_a_job_at_its_deadline_exactly(tmp_path, limit, said):
    async with rig(tmp_path, {"sleep": Program()}) as r:
        job = r.start("sleep", timeout_seconds=limit)
        await asyncio.sleep(0)
        assert r.host.when("start", job.id) == [at(0)]
        status = await job.settled
        assert r.host.when("SIGTERM", job.launched.pid) == [at(limit)]
        assert asyncio.get_running_loop().time() == at(limit)  # it died of SIGTERM: no grace was waited out
        record, _ = await r.stored(job)
        assert (status, record.status, record.reason) == (JobStatus.ERROR, JobStatus.ERROR,
                                                          f"time limit of {said} s exceeded")
        assert (record.exit_code, record.signal) == (None, signal.SIGTERM)


@in_virtual_time
async def test_a_process_ignoring_sigterm_has_the_grace_period_then_sigkill(tmp_path):
    async with rig(tmp_path, {"trap '' TERM; sleep": Program(ignores_sigterm=True)}) as r:
        job = r.start("trap '' TERM; sleep")
        await until(1.0)
        r.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        assert await job.settled is JobStatus.STOPPED
        pid = job.launched.pid
        assert (r.host.when("SIGTERM", pid), r.host.when("SIGKILL", pid)) == ([at(1.0)], [at(1.0 + GRACE)])
        assert asyncio.get_running_loop().time() == at(1.0 + GRACE)
        record, _ = await r.stored(job)
        assert (record.status, record.signal, record.reason) == (JobStatus.STOPPED, signal.SIGKILL, None)


@in_virtual_time
async def test_sigkill_is_sent_again_each_second_while_processes_fork_as_they_are_killed(tmp_path, caplog):
    async with rig(tmp_path, {"fork loop": Program(ignores_sigterm=True, forks_when_killed=2)}) as r:
        job = r.start("fork loop")
        await asyncio.sleep(0)
        r.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        await job.settled
        kills = [(time, pid) for time, what, pid in r.host.events if what == "SIGKILL"]
        assert kills == [(at(GRACE), job.launched.pid), (at(GRACE + 1), job.launched.pid + 1),
                         (at(GRACE + 2), job.launched.pid + 2)]
        assert "processes survive SIGKILL after 1 rounds: [1001]" in caplog.text
        assert "processes survive SIGKILL after 2 rounds: [1002]" in caplog.text
        assert not r.host.alive(job.id) and r.host.when("release", job.id) == [at(GRACE + 2)]


@in_virtual_time
async def test_a_process_started_as_the_job_ends_gets_sigterm_too_not_the_grace_period(tmp_path):
    # `trap 'sleep 100 & exit 0' TERM`: the shell starts one more process as it ends.
    async with rig(tmp_path, {"trap": Program(on_sigterm=Program())}) as r:
        job = r.start("trap")
        await until(2.0)
        r.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        await job.settled
        newcomer = job.launched.pid + 1
        assert r.host.when("SIGTERM", newcomer) == [at(2.0)] and not r.host.when("SIGKILL", newcomer)
        assert asyncio.get_running_loop().time() < 2.0 + 0.01  # known gone at one of the first checks
        record, _ = await r.stored(job)
        assert (record.status, record.exit_code) == (JobStatus.STOPPED, 0)


@in_virtual_time
async def test_a_job_leaving_processes_behind_ends_when_they_do_with_its_own_exit_code(tmp_path):
    daemon = Program(ignores_sigterm=True)
    async with rig(tmp_path, {"daemon & exit 5": Program(runs_for=3.0, exit_code=5, children=(daemon,))}) as r:
        job = r.start("daemon & exit 5")
        await job.settled
        left = job.launched.pid + 1
        assert (r.host.when("SIGTERM", left), r.host.when("SIGKILL", left)) == ([at(3.0)], [at(3.0 + GRACE)])
        record, _ = await r.stored(job)
        assert (record.status, record.exit_code, record.signal) == (JobStatus.FINISHED, 5, None)


@in_virtual_time
async def test_a_queued_job_stopped_never_starts_and_a_running_one_is_ended(tmp_path):
    async with rig(tmp_path, {"sleep": Program()}, max_jobs=1) as r:
        running, queued = r.start("sleep"), r.start("sleep")
        await until(1.0)
        r.lifecycle.end(queued, EndRequest(JobStatus.STOPPED))
        assert queued.settled.done()  # at once: it had no process to end
        record, _ = await r.stored(queued)
        assert (record.status, record.started_at, record.reason) == (JobStatus.STOPPED, None, None)
        r.lifecycle.end(running, EndRequest(JobStatus.STOPPED))
        await running.settled
        record, _ = await r.stored(running)
        assert (record.status, record.signal) == (JobStatus.STOPPED, signal.SIGTERM)
        assert not r.host.when("start", queued.id)
        later = r.start("sleep")  # and the slot is free for the next
        await asyncio.sleep(0)
        assert r.host.when("start", later.id) == [at(1.0)]
        r.lifecycle.end(later, EndRequest(JobStatus.STOPPED))
        await later.settled


@in_virtual_time
async def test_the_first_reason_to_end_a_job_stands(tmp_path):
    async with rig(tmp_path, {"trap '' TERM; sleep": Program(ignores_sigterm=True)}) as r:
        job = r.start("trap '' TERM; sleep", timeout_seconds=10.0)
        await until(12.0)  # the time limit has ended it, and it waits out its grace period
        r.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        assert await asyncio.shield(job.settled) is JobStatus.ERROR
        assert r.host.when("SIGTERM", job.launched.pid) == [at(10.0)]  # the stop sent nothing more
        record, _ = await r.stored(job)
        assert (record.status, record.reason) == (JobStatus.ERROR, "time limit of 10 s exceeded")


@in_virtual_time
async def test_a_job_whose_shell_exited_is_finished_whatever_comes_while_its_processes_end(tmp_path):
    daemon = Program(ignores_sigterm=True)
    async with rig(tmp_path, {"daemon & exit 3": Program(runs_for=2.0, exit_code=3, children=(daemon,))}) as r:
        job = r.start("daemon & exit 3", timeout_seconds=4.0)
        await until(3.0)
        r.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        await job.settled  # at 2 + GRACE, past the time limit at 4 too
        record, _ = await r.stored(job)
        assert (record.status, record.exit_code, record.reason) == (JobStatus.FINISHED, 3, None)


@in_virtual_time
async def test_settling_reads_the_last_output_and_the_usage_before_the_final_save_then_starts_the_next_job(tmp_path):
    # On SIGTERM the shell starts one more process, which writes. With no grace period, the end never waits:
    # nothing but the settling itself can read what that process wrote.
    programs = {"first": Program(output=b"working\n", on_sigterm=Program(output=b"cleaning up\n")),
                "second": Program(runs_for=1.0)}
    async with rig(tmp_path, programs, max_jobs=1, kill_grace=0) as r:
        first, second = r.start("first"), r.start("second")
        await until(2.0)
        r.lifecycle.end(first, EndRequest(JobStatus.STOPPED))
        await first.settled
        record, output = await r.stored(first)
        assert (record.status, output, record.output_bytes) == (JobStatus.STOPPED, b"working\ncleaning up\n", 20)
        assert (record.cpu_seconds, record.peak_memory_bytes) == (USAGE.cpu_seconds, USAGE.peak_memory_bytes)
        # In this order, at once: its usage read, what the host held handed back, the next job started.
        assert [(time, what) for time, what, of in r.host.events if of in (first.id, second.id)][-3:] == [
            (at(2.0), "usage"), (at(2.0), "release"), (at(2.0), "start")]
        await second.settled
        assert asyncio.get_running_loop().time() == at(3.0)


@in_virtual_time
async def test_a_job_that_cannot_start_is_an_error_and_its_slot_goes_to_the_next(tmp_path):
    async with rig(tmp_path, {"broken": Program(cannot_start=True), "true": Program(runs_for=0.0)},
                   max_jobs=1) as r:
        broken, other = r.start("broken"), r.start("true")
        assert await broken.settled is JobStatus.ERROR
        assert await other.settled is JobStatus.FINISHED
        record, _ = await r.stored(broken)
        assert (record.reason, record.started_at) == ("could not start: Resource temporarily unavailable", None)


@in_virtual_time
async def test_a_job_its_memory_limit_killed_is_an_error_naming_the_limit(tmp_path):
    async with rig(tmp_path, {"hog": Program(runs_for=1.0, killed_by_memory_limit=True)}) as r:
        job = r.start("hog")
        await job.settled
        record, _ = await r.stored(job)
        assert (record.status, record.signal, record.reason) == (
            JobStatus.ERROR, signal.SIGKILL, "memory limit of 64M exceeded: the kernel killed a process of the job")


@in_virtual_time
async def test_shutdown_ends_every_job_and_starts_none(tmp_path):
    programs = {"sleep": Program(), "trap '' TERM; sleep": Program(ignores_sigterm=True)}
    async with rig(tmp_path, programs, max_jobs=2) as r:
        jobs = [r.start("sleep"), r.start("trap '' TERM; sleep"), r.start("sleep")]
        await until(3.0)
        await r.lifecycle.end_all(EndRequest(JobStatus.ERROR, "server shut down"))
        assert asyncio.get_running_loop().time() == at(3.0 + GRACE) and not r.lifecycle.jobs
        stored = [(await r.stored(job))[0] for job in jobs]
        assert [(record.status, record.reason) for record in stored] == [(JobStatus.ERROR, "server shut down")] * 3
        assert [record.signal for record in stored] == [signal.SIGTERM, signal.SIGKILL, None]
        assert not r.host.when("start", jobs[2].id)  # it was waiting, and never ran


@in_virtual_time
async def test_what_an_earlier_run_left_is_settled_as_an_error_and_its_processes_ended(tmp_path):
    async with rig(tmp_path, {}) as r:
        running, waiting, finished = (JobRecord(new_job_id(), OWNER, "sleep", JobStatus.CREATED, now())
                                      for _ in range(3))
        running.move_to(JobStatus.RUNNING)
        finished.move_to(JobStatus.RUNNING)
        finished.move_to(JobStatus.FINISHED, exit_code=0)
        for record in (running, waiting, finished):
            r.store.insert(record)
        r.store.commit()
        stubborn = r.host.leave_behind(running.id, Program(ignores_sigterm=True))
        obliging = r.host.leave_behind(running.id, Program())
        left = settle_unfinished(r.store, "the server was restarted")
        assert left == {running.id, waiting.id}
        for record in (running, waiting):
            assert (r.store.get(record.id, OWNER).status, r.store.get(record.id, OWNER).reason) == (
                JobStatus.ERROR, "the server was restarted")
        assert r.store.get(finished.id, OWNER).status is JobStatus.FINISHED
        await until(1.0)
        await end_leftovers(r.host, left, GRACE, ChildExits())
        assert r.host.when("SIGTERM", obliging.pid) == [at(1.0)] and not r.host.when("SIGKILL", obliging.pid)
        assert r.host.when("SIGKILL", stubborn.pid) == [at(1.0 + GRACE)]
        assert r.host.when("release leftovers", sorted(left)) == [at(1.0 + GRACE)]
        assert not r.host.alive(running.id)


# --- live restore: jobs taken back from their keepers ----------------------------------------------------------

def left_running(r: Rig, timeout_seconds: float = 60.0) -> JobRecord:
    """The record of a job an earlier run of the supervisor left running."""
    record = JobRecord(new_job_id(), OWNER, "sleep", JobStatus.CREATED, now(),
                       limits=JobLimits(timeout_seconds, 64 * MIB, 1.0, 100))
    record.move_to(JobStatus.RUNNING)
    r.store.insert(record)
    r.store.commit()
    r.store.open_output(record.id).write(b"before\n")
    return record


@in_virtual_time
async def test_a_job_taken_back_keeps_its_output_whole_and_its_time_limit_from_its_real_start(tmp_path):
    async with rig(tmp_path, {}) as r:
        record = left_running(r)
        r.host.keep_running(record.id, Program(output=b"after\n"), elapsed=40.0, spool=b"meanwhile\n")
        job = r.lifecycle.take_back(record, "lost")
        assert await job.settled is JobStatus.ERROR
        assert r.host.when("SIGTERM", job.launched.pid) == [at(20.0)]  # 60 s from its start, 40 s before
        stored, output = await r.stored(job)
        assert (stored.reason, stored.signal) == ("time limit of 60 s exceeded", signal.SIGTERM)
        assert output == b"before\nmeanwhile\nafter\n"
        assert stored.output_bytes == len(output)


@in_virtual_time
async def test_a_job_taken_back_past_its_time_limit_ends_at_once(tmp_path):
    async with rig(tmp_path, {}) as r:
        record = left_running(r, timeout_seconds=5.0)
        process = r.host.keep_running(record.id, Program(), elapsed=7.0, spool=b"")
        assert await r.lifecycle.take_back(record, "lost").settled is JobStatus.ERROR
        assert r.host.when("SIGTERM", process.pid) == [at(0)]


@in_virtual_time
async def test_a_job_taken_back_that_exits_is_settled_from_its_keepers_record(tmp_path):
    async with rig(tmp_path, {}) as r:
        record = left_running(r)
        r.host.keep_running(record.id, Program(runs_for=3.0, exit_code=4), elapsed=1.0, spool=b"")
        job = r.lifecycle.take_back(record, "lost")
        assert await job.settled is JobStatus.FINISHED
        assert asyncio.get_running_loop().time() == at(3.0)
        stored, _ = await r.stored(job)
        assert (stored.exit_code, stored.signal, stored.reason) == (4, None, None)
        assert r.host.when("release", record.id) == [at(3.0)]


@pytest.mark.parametrize(("ended_by", "reason", "status"), [
    (Ending.NONE, None, JobStatus.FINISHED),
    (Ending.TIME_LIMIT, "time limit of 60 s exceeded", JobStatus.ERROR),
    (Ending.FENCE, FENCE_REASON, JobStatus.ERROR),
])
@in_virtual_time
async def test_a_job_that_ended_while_no_supervisor_ran_is_recorded_as_it_ended(tmp_path, ended_by, reason, status):
    async with rig(tmp_path, {}) as r:
        record = left_running(r)
        r.host.ended_while_away(record.id, Ended(Exit(0, None if ended_by else 3, signal.SIGTERM if ended_by else None),
                                                 ended_by, b"meanwhile\n", ended_at=1000.0))
        job = r.lifecycle.take_back(record, "lost")
        assert await job.settled is status
        stored, output = await r.stored(job)
        assert (stored.reason, stored.exit_code) == (reason, None if ended_by else 3)
        assert stored.ended_at == 1000.0  # when it ended, as its keeper recorded it, not when it was taken back
        assert output == b"before\nmeanwhile\n"
        assert r.host.when("release kept", record.id) == [at(0)]


@in_virtual_time
async def test_a_job_whose_keeper_is_gone_is_an_error_and_what_is_left_of_it_is_ended(tmp_path):
    async with rig(tmp_path, {}) as r:
        record = left_running(r)
        orphan = r.host.leave_behind(record.id, Program(ignores_sigterm=True))
        job = r.lifecycle.take_back(record, "the server restarted, and its keeper was gone")
        assert await job.settled is JobStatus.ERROR
        stored, output = await r.stored(job)
        assert stored.reason == "the server restarted, and its keeper was gone" and output == b"before\n"
        assert asyncio.get_running_loop().time() == at(0)  # recorded at once; what is left is ended meanwhile
        await until(GRACE + 1)
        assert r.host.when("SIGKILL", orphan.pid) == [at(GRACE)]


@in_virtual_time
async def test_a_keeper_ending_its_job_for_the_lease_is_recorded_as_fenced(tmp_path):
    async with rig(tmp_path, {}) as r:
        record = left_running(r)
        r.host.keep_running(record.id, Program(), elapsed=1.0, spool=b"")
        job = r.lifecycle.take_back(record, "lost")
        await until(2.0)
        r.host.keeper_says(record.id, FENCED)
        assert await job.settled is JobStatus.ERROR
        stored, _ = await r.stored(job)
        assert stored.reason == FENCE_REASON
        assert r.host.when("SIGTERM", job.launched.pid) == [at(2.0)]


@in_virtual_time
async def test_detaching_leaves_running_jobs_to_their_keepers_and_waiting_ones_recorded(tmp_path):
    async with rig(tmp_path, {"sleep": Program(output=b"started\n")}, max_jobs=1) as r:
        running, waiting = r.start("sleep"), r.start("sleep")
        await until(1.0)
        await r.lifecycle.detach_all()
        r.lifecycle.start_runnable()
        assert r.host.alive(running.id) and not r.host.when("start", waiting.id)
        assert not r.host.when("SIGTERM", running.launched.pid) and not running.settled.done()
        assert running.launched.control is None and running.launched.output_fd is None
        assert [(await r.stored(job))[0].status for job in (running, waiting)] == [JobStatus.RUNNING,
                                                                                   JobStatus.CREATED]
