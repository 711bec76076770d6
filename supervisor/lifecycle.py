"""Driving jobs through their phases (see job.py): launching each when the pool gives it a slot, storing its
output as it comes, ending it at its time limit or on request, ending every process it leaves, and settling it.

Everything runs on the supervisor's one event loop; nothing here blocks it for long, so deadlines fire on time.
Its clock is the loop's (`loop.time()`, `call_later`, `asyncio.sleep`), never read elsewhere, and it reaches
a job's processes only through a `JobHost` (host.py), but for reading their output pipe: on a loop with virtual
time and a simulated host, a job's whole life, a 60 s time limit included, runs in milliseconds
(tests/unit/test_lifecycle.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.sizes import format_size
from workerctl.store.interface import JobRecord, OutputWriteError, StoreError
from workerctl.supervisor.accounts import JobAccounts, JobUser
from workerctl.supervisor.exits import ChildExits
from workerctl.supervisor.homes import Homes
from workerctl.supervisor.exits import Exit
from workerctl.supervisor.host import JobHost, TakenBack
from workerctl.supervisor.job import EndRequest, Job, Launched, Phase
from workerctl.supervisor.keepers import FENCED, Ended, Ending, consumed
from workerctl.supervisor.killing import terminate
from workerctl.supervisor.leftovers import end_leftovers
from workerctl.supervisor.pool import JobPool
from workerctl.supervisor.publisher import Publisher

log = logging.getLogger(__name__)

_CLAIM_AGAIN_SECONDS = 1.0

_READ_CHUNK = 1024 * 1024
FENCE_REASON = ("this host could not renew its lease in time (cut off from the cluster, or stalled), so its keeper "
                "ended the job")


class JobLifecycle:
    def __init__(self, host: JobHost, pool: JobPool, publisher: Publisher, accounts: JobAccounts, homes: Homes,
                 kill_grace: float) -> None:
        self.host = host
        self.homes = homes
        self._homes_preparing: dict[str, asyncio.Future[Path]] = {}
        self.pool = pool
        self.publisher = publisher
        self.accounts = accounts
        self.kill_grace = kill_grace
        self.jobs: dict[str, Job] = {}  # every job not yet settled
        self.child_exits = ChildExits()
        self.jobs_settled = asyncio.Event()  # set whenever a job settles (pruning waits on it)
        self._launching = True  # cleared by end_all: from then on no job starts
        self._jobs_by_pid: dict[int, Job] = {}
        self._to_launch: deque[Job] = deque()
        self._launch_handle: asyncio.Handle | None = None
        self._claims_failing = False  # whether the store could not record a job's start (logged once)
        self._lease_lapsed = False  # whether this host's lease has lapsed (logged once)

    def add(self, record: JobRecord) -> None:
        """Take a newly recorded job into the pool; `start_runnable` launches it when its turn comes."""
        self.jobs[record.id] = Job(record)
        self.pool.add(record.id, record.owner)

    def live(self) -> tuple[set[str], set[int]]:
        """The jobs not yet settled, and the user IDs they run as (what the stray sweep must spare)."""
        return set(self.jobs), self.accounts.uids_of({job.owner for job in self.jobs.values()})

    # --- launching ----------------------------------------------------------------------------------------

    def start_runnable(self) -> None:
        if not self._launching:
            return
        self._to_launch.extend(self.jobs[job_id] for job_id in self.pool.take_runnable())
        self._schedule_launches()

    def _schedule_launches(self) -> None:
        if self._to_launch and self._launch_handle is None:
            self._launch_handle = asyncio.get_running_loop().call_soon(self._launch_next)

    def _launch_first(self, job: Job) -> None:
        """Launch next a job that has its slot already (it waited for its owner's home, or for the store)."""
        self._to_launch.appendleft(job)
        self._schedule_launches()

    def _launch_next(self) -> None:
        """Launch one job, and leave the next for the next turn of the loop: a spawn takes a millisecond or so,
        and exits, answers and events should not wait behind a whole batch of them."""
        self._launch_handle = None
        while self._to_launch:
            job = self._to_launch.popleft()
            if job.phase is Phase.QUEUED:  # not stopped while it waited
                self._launch(job)
                break
        self._schedule_launches()

    def _launch(self, job: Job) -> None:
        try:
            user = self.accounts.user_for(job.owner)
            if not self.homes.ready(job.owner):
                self._prepare_home(job, user)
                return
            if not self._lease_held(job) or not self._claimed(job):
                return
            output = self.publisher.store.open_output(job.id)
            try:
                started = self.host.start(job.record, user, job.limits, lambda: job.main_unreaped)
            except BaseException:
                output.close()
                raise
        except (OSError, subprocess.SubprocessError) as error:
            self._could_not_start(job, error)
            return
        launched = Launched(started.pid, output, started.output_fd, started.scope, started.release,
                            control=started.control)
        job.start_running(launched)
        self._jobs_by_pid[started.pid] = job
        launched.stop_watching_exit = self.host.watch_exit(started.pid, self.reap)
        self._follow(job, job.limits.timeout_seconds)
        self.publisher.save(job.record)

    def _follow(self, job: Job, time_left: float) -> None:
        """Read the running job's output and its keeper's messages as they come, and end it in `time_left`
        seconds."""
        launched = job.launched
        assert launched is not None
        loop = asyncio.get_running_loop()
        if launched.output_fd is not None:
            loop.add_reader(launched.output_fd, self._drain_output, job)
        if launched.control is not None:
            loop.add_reader(launched.control, self._keeper_says, job)
        launched.deadline = loop.call_later(max(time_left, 0.0), self._time_limit_reached, job)

    def _lease_held(self, job: Job) -> bool:
        """Whether this host's lease lets the job start now (an agent's: host.py); if not, it keeps its slot and
        is tried again in a second."""
        if self.host.lease_held():
            if self._lease_lapsed:
                log.info("this host's lease is renewed: jobs start again")
                self._lease_lapsed = False
            return True
        if not self._lease_lapsed:
            log.warning("jobs wait to start until this host's lease is renewed")
        self._lease_lapsed = True
        asyncio.get_running_loop().call_later(_CLAIM_AGAIN_SECONDS, self._launch_again, job)
        return False

    def _claimed(self, job: Job) -> bool:
        """Whether the job may start here. In a cluster's store it is recorded as running before its first
        process starts, if its record is still this host's created job: a job that waited on a host taken for
        lost is taken over by another, and must then never start here too. If the store cannot be reached, the
        job keeps its slot and is tried again in a second."""
        try:
            starting = replace(job.record)
            starting.move_to(JobStatus.RUNNING)
            claimed = self.publisher.store.claim(starting)
        except StoreError as error:
            if not self._claims_failing:
                log.warning("jobs wait to start until the store can record it: %s", error)
            self._claims_failing = True
            asyncio.get_running_loop().call_later(_CLAIM_AGAIN_SECONDS, self._launch_again, job)
            return False
        if self._claims_failing:
            log.info("jobs start again")
            self._claims_failing = False
        if not claimed:
            log.warning("job %s: its record is no longer this host's waiting job (stopped, or taken over by another "
                        "host); it does not start here", job.id)
            self._settle(job, JobStatus.ERROR, recorded=False, reason="no longer this host's")
            asyncio.get_running_loop().call_soon(self.start_runnable)
        return claimed

    def _launch_again(self, job: Job) -> None:
        if job.phase is Phase.QUEUED and self._launching:  # it has its slot still
            self._launch_first(job)

    def _could_not_start(self, job: Job, error: BaseException) -> None:
        log.error("job %s could not start: %s", job.id, error)
        self._settle(job, JobStatus.ERROR, reason=f"could not start: {getattr(error, 'strerror', None) or error}")
        asyncio.get_running_loop().call_soon(self.start_runnable)

    def _prepare_home(self, job: Job, user: JobUser) -> None:
        """Make and mount the owner's home in a worker thread (once for all their jobs waiting on it), then
        launch the job, unless it was stopped meanwhile."""
        preparing = self._homes_preparing.get(job.owner)
        if preparing is None:
            preparing = asyncio.get_running_loop().run_in_executor(None, self.homes.prepare, job.owner, user)
            self._homes_preparing[job.owner] = preparing
            preparing.add_done_callback(lambda _: self._homes_preparing.pop(job.owner, None))

        def prepared(done: asyncio.Future[Path]) -> None:
            if job.phase is not Phase.QUEUED:
                return
            if done.exception() is not None:
                self._could_not_start(job, done.exception())  # type: ignore[arg-type]
                return
            self._launch_first(job)
        preparing.add_done_callback(prepared)

    # --- keepers (keepers.py) -------------------------------------------------------------------------------

    def _keeper_says(self, job: Job) -> None:
        launched = job.launched
        assert launched is not None and launched.control is not None
        try:
            message = launched.control.recv(16)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == FENCED:
            log.warning("job %s: its keeper is ending it, as this host's lease is about to lapse", job.id)
            self.end(job, EndRequest(JobStatus.ERROR, FENCE_REASON))
        elif not message:  # the keeper has exited
            self._close_control(launched)
            if launched.taken_back and job.main_exit is None:  # not a child of ours: its record says how it ended
                self._keeper_exited(job)

    def _keeper_exited(self, job: Job) -> None:
        """Note how a job taken back ended, from its keeper's record, and finish it."""
        assert job.launched is not None
        kept = self.host.keeper_ended(job.record)
        if kept.ended_by is not Ending.NONE and job.phase is Phase.RUNNING:
            job.request_end(self._keeper_reason(job, kept.ended_by))
        if job.main_exited(self._keeper_exit(job, kept)):
            asyncio.create_task(self._finish(job))

    def _keeper_exit(self, job: Job, kept: Ended | None = None) -> Exit:
        """How a job taken back ended by its keeper's record; killed, if the keeper was killed before it wrote it
        (the supervisor's SIGKILL of every process of the job)."""
        assert job.launched is not None
        kept = kept or self.host.keeper_ended(job.record)
        return kept.exit or Exit(job.launched.pid, None, signal.SIGKILL)

    def _close_control(self, launched: Launched) -> None:
        if launched.control is not None:
            asyncio.get_running_loop().remove_reader(launched.control)
            launched.control.close()
            launched.control = None

    def _keeper_reason(self, job: Job, ending: Ending) -> EndRequest:
        return self._time_limit_request(job) if ending is Ending.TIME_LIMIT else EndRequest(JobStatus.ERROR,
                                                                                             FENCE_REASON)

    def take_back(self, record: JobRecord, lost_reason: str) -> Job:
        """Take back a job an earlier run of the supervisor left running, from its keeper (live restore): it
        runs on, with its output whole and its time limit counted from its real start; or, if it ended
        meanwhile, settle it as it ended; or, if its keeper is gone too, settle it as `error` for `lost_reason`
        and end what is left of it. The job, as it is now."""
        job = Job(record)
        self.jobs[record.id] = job
        self.pool.add_running(record.id, record.owner)
        taken = self.host.take_back(record, lambda: job.main_unreaped)
        if isinstance(taken, TakenBack):
            attachment = taken.attachment
            launched = Launched(attachment.keeper_pid, self.publisher.store.reopen_output(record.id),
                                attachment.output_fd, taken.scope, taken.release, control=attachment.control,
                                taken_back=True)
            job.resume_running(launched)
            self._store_output(job, attachment.spool)
            consumed(attachment)
            log.info("job %s (user %s): taken back from its keeper, %.1f s into its run", job.id, job.owner,
                     attachment.elapsed)
            if attachment.ending is not Ending.NONE:
                job.request_end(self._keeper_reason(job, attachment.ending))
                asyncio.create_task(self._finish(job))
            self._follow(job, job.limits.timeout_seconds - attachment.elapsed)
        else:
            self._settle_ended(job, taken, lost_reason)
        return job

    def _settle_ended(self, job: Job, kept: Ended, lost_reason: str) -> None:
        """Settle at once a job taken back whose keeper ended while no supervisor ran, as its keeper recorded it;
        one whose keeper recorded nothing (it was killed, or the host restarted) as `error`, and end in the
        background whatever is left of it."""
        launched = Launched(0, self.publisher.store.reopen_output(job.id), None, self.host.leftovers([job.id]),
                            lambda: self.host.release_kept(job.record), taken_back=True)
        job.resume_running(launched)
        self._store_output(job, kept.spool)
        if kept.exit is None:
            job.request_end(EndRequest(JobStatus.ERROR, lost_reason))
            asyncio.create_task(end_leftovers(self.host, [job.id], self.kill_grace, self.child_exits))
        elif kept.ended_by is not Ending.NONE:
            job.request_end(self._keeper_reason(job, kept.ended_by))
        job.main_exited(kept.exit or Exit(0, None, None))
        self._conclude(job, kept.ended_at)

    async def detach_all(self) -> None:
        """Leave every running job to its keeper, which keeps it running until a later supervisor takes it
        back (live restore), and launch none from now on; jobs that wait stay recorded as `created`, and those
        being ended are settled first."""
        self._launching = False
        for job in list(self.jobs.values()):
            launched = job.launched
            if job.phase is not Phase.RUNNING or launched is None:
                continue
            if launched.deadline is not None:
                launched.deadline.cancel()
            if launched.stop_watching_exit is not None:
                launched.stop_watching_exit()
            if launched.output_fd is not None:
                self._drain_output(job)
            self._close_output(launched)
            launched.output.close()
            self._close_control(launched)  # and the keeper holds the output from here on
        await asyncio.gather(*(job.settled for job in self.jobs.values() if job.phase is Phase.ENDING))

    # --- output ---------------------------------------------------------------------------------------------

    def _drain_output(self, job: Job) -> None:
        launched = job.launched
        assert launched is not None and launched.output_fd is not None
        try:
            data = os.read(launched.output_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if data:
            self._store_output(job, data)
        else:  # every writer has closed it: nothing more can come
            self._close_output(launched)

    def _store_output(self, job: Job, data: bytes) -> None:
        assert job.launched is not None
        if job.output_error is None:
            try:
                job.launched.output.write(data)
            except OutputWriteError as error:
                job.output_error = error.strerror or str(error)
                log.error("job %s: output lost from byte %d on: %s", job.id, job.launched.output.total,
                          job.output_error)
        self.publisher.output_grew(job.id)

    def _close_output(self, launched: Launched) -> None:
        if launched.output_fd is not None:
            asyncio.get_running_loop().remove_reader(launched.output_fd)
            os.close(launched.output_fd)
            launched.output_fd = None

    def _drain_remaining_output(self, job: Job) -> None:
        """Read what the job's processes left in the pipe. None of them is alive, so this ends at EOF at once;
        if something outside the job holds the pipe open, stop at what is there rather than wait."""
        launched = job.launched
        assert launched is not None
        while launched.output_fd is not None:
            try:
                data = os.read(launched.output_fd, _READ_CHUNK)
            except BlockingIOError:
                log.warning("job %s: its output pipe is held open by a process outside the job", job.id)
                data = b""
            if not data:
                self._close_output(launched)
            else:
                self._store_output(job, data)

    # --- ending ---------------------------------------------------------------------------------------------

    def _time_limit_reached(self, job: Job) -> None:
        self.end(job, self._time_limit_request(job))

    @staticmethod
    def _time_limit_request(job: Job) -> EndRequest:
        return EndRequest(JobStatus.ERROR, f"time limit of {job.limits.timeout_seconds:g} s exceeded")

    def end(self, job: Job, request: EndRequest) -> None:
        """End a job for the server's reasons: settle it if it waits, else end its processes."""
        if job.phase is Phase.QUEUED:
            self.pool.withdraw(job.id, job.owner)  # if it waits; one about to be launched gives its slot back
            self._settle(job, request.status, reason=request.reason)
        elif job.request_end(request):
            asyncio.create_task(self._finish(job))

    def reap(self) -> None:
        """Reap every child that has exited: job shells and orphans re-parented to the supervisor alike."""
        self.child_exits.notify()
        for exit in self.host.reap():
            job = self._jobs_by_pid.pop(exit.pid, None)
            if job is None:
                continue
            assert job.launched is not None
            if job.launched.stop_watching_exit is not None:
                job.launched.stop_watching_exit()
                job.launched.stop_watching_exit = None
            if job.main_exited(exit):
                asyncio.create_task(self._finish(job))

    async def _finish(self, job: Job) -> None:
        """End every process of the job, keep the last of its output, and settle it."""
        launched = job.launched
        assert launched is not None and job.phase is Phase.ENDING
        if launched.deadline is not None:
            launched.deadline.cancel()
        await terminate(launched.scope, self.kill_grace, self.child_exits)
        if job.main_exit is None and launched.taken_back:  # its keeper is gone with the rest: its record says how
            self._close_control(launched)
            job.main_exited(self._keeper_exit(job))
        while job.main_exit is None:
            self.reap()
            if job.main_exit is None:  # outside its scope somehow; its pid is still ours, as it is unreaped
                log.warning("job %s: main process %d outlived its scope; killing it", job.id, launched.pid)
                self.host.kill(launched.pid)
                await asyncio.sleep(0.001)
        self._drain_remaining_output(job)
        self._conclude(job)

    def _conclude(self, job: Job, ended_at: float | None = None) -> None:
        """Settle a job none of whose processes is left, its output all read: its usage, what it held handed
        back, its final status recorded, as ended now or at `ended_at` (its keeper's record)."""
        launched = job.launched
        assert launched is not None and job.main_exit is not None
        # Read before the job's cgroups go: where containment and limits share one (cgroup v2), releasing the
        # scope removes the files the usage is read from.
        self._record_usage(job)
        memory_kills = self.host.memory_kills(job.owner, job.id)
        launched.release()  # every process of the job is gone
        ended = job.end_request or EndRequest(JobStatus.FINISHED)
        if memory_kills and job.main_exit.code != 0 and ended.status is JobStatus.FINISHED:
            ended = EndRequest(JobStatus.ERROR, f"memory limit of {format_size(job.limits.memory_bytes)} exceeded: "
                                                "the kernel killed a process of the job")
        reasons = [reason for reason in (ended.reason, job.output_error and f"output lost: {job.output_error}")
                   if reason]
        self._settle(job, ended.status, exit_code=job.main_exit.code, signal=job.main_exit.signal,
                     reason="; ".join(reasons) or None, **({} if ended_at is None else {"ended_at": ended_at}))
        self.start_runnable()

    def _record_usage(self, job: Job) -> None:
        """Read what the job has used so far into its record."""
        usage = self.host.usage(job.owner, job.id)
        job.record.cpu_seconds = usage.cpu_seconds
        job.record.peak_memory_bytes = usage.peak_memory_bytes

    def sample_usage(self) -> None:
        """Record the usage of every running job whose usage has changed, so status shows it live."""
        for job in self.jobs.values():
            if job.phase is Phase.RUNNING:
                before = (job.record.cpu_seconds, job.record.peak_memory_bytes)
                self._record_usage(job)
                if (job.record.cpu_seconds, job.record.peak_memory_bytes) != before:
                    self.publisher.save(job.record)

    def _settle(self, job: Job, status: JobStatus, recorded: bool = True, **changes: Any) -> None:
        """Give the job its final status and let go of everything it held, its slot in the pool included; the
        status is recorded unless the store keeps another host's (`recorded` False)."""
        self.pool.release(job.id)
        if job.launched is not None:
            changes["output_bytes"] = job.launched.output.total
            job.launched.output.close()
            self._close_control(job.launched)
        job.settle(status, **changes)
        if recorded:
            self.publisher.save(job.record)
        del self.jobs[job.id]
        self.jobs_settled.set()

    async def end_all(self, request: EndRequest) -> None:
        """End every job, launching none from now on (queued jobs are settled at once), and return once all
        are settled."""
        self._launching = False
        jobs = list(self.jobs.values())
        for job in jobs:
            self.end(job, request)
        await asyncio.gather(*(job.settled for job in jobs))

    async def homes_prepared(self) -> None:
        """Return once no home is being made or mounted (at shutdown, before the homes are unmounted)."""
        await asyncio.gather(*self._homes_preparing.values(), return_exceptions=True)
