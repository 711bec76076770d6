"""Driving jobs through their phases (see job.py): launching each when the pool gives it a slot, storing its
output as it comes, ending it at its time limit or on request, ending every process it leaves, and settling it.

Everything runs on the supervisor's one event loop; nothing here blocks it for long, so deadlines fire on time.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from workerctl.runtime.settings import ServerSettings
from workerctl.store.interface import JobRecord, OutputWriteError, StoreError
from workerctl.store.layout import DataLayout
from workerctl.store.remover import TreeRemover
from workerctl.supervisor.accounts import JobAccounts, JobUser
from workerctl.supervisor.containment import Containment
from workerctl.supervisor.exits import ChildExits, pidfds_work, reap_exited, watch_exit
from workerctl.supervisor.homes import Homes
from workerctl.supervisor.job import EndRequest, Job, Launched, Phase
from workerctl.supervisor.killing import terminate
from workerctl.supervisor.limits import Limits
from workerctl.supervisor.pool import JobPool
from workerctl.supervisor.publisher import Publisher
from workerctl.supervisor.sandbox import JobPlan, Sandbox
from workerctl.supervisor.spawner import job_environment, make_private_directory, spawn

log = logging.getLogger(__name__)

_CLAIM_AGAIN_SECONDS = 1.0

_READ_CHUNK = 1024 * 1024


class JobLifecycle:
    def __init__(self, settings: ServerSettings, layout: DataLayout, pool: JobPool, publisher: Publisher,
                 containment: Containment, accounts: JobAccounts, sandbox: Sandbox, limits: Limits,
                 homes: Homes) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.limits = limits
        self.homes = homes
        self._homes_preparing: dict[str, asyncio.Future[Path]] = {}
        self.layout = layout
        self.pool = pool
        self.publisher = publisher
        self.containment = containment
        self.accounts = accounts
        self.jobs: dict[str, Job] = {}  # every job not yet settled
        self.child_exits = ChildExits()
        self.jobs_settled = asyncio.Event()  # set whenever a job settles (pruning waits on it)
        self.launching = True  # cleared at shutdown: queued jobs stay queued
        self._jobs_by_pid: dict[int, Job] = {}
        self._to_launch: deque[Job] = deque()
        self._launch_handle: asyncio.Handle | None = None
        self._remover = TreeRemover()
        self._claims_failing = False  # whether the store could not record a job's start (logged once)

    def add(self, record: JobRecord) -> None:
        """Take a newly recorded job into the pool; `start_runnable` launches it when its turn comes."""
        self.jobs[record.id] = Job(record)
        self.pool.add(record.id, record.owner)

    def live(self) -> tuple[set[str], set[int]]:
        """The jobs not yet settled, and the user IDs they run as (what the stray sweep must spare)."""
        return set(self.jobs), self.accounts.uids_of({job.owner for job in self.jobs.values()})

    # --- launching ----------------------------------------------------------------------------------------

    def start_runnable(self) -> None:
        if not self.launching:
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
            if not self._claimed(job):
                return
            with contextlib.ExitStack() as undo:  # hands back what was acquired if a later step fails
                temporary = None
                if not self.sandbox.namespaces:  # no /tmp of its own: a directory of its own instead
                    temporary = make_private_directory(self.layout.workdir(job.id), user)
                    undo.callback(self._remover.remove, temporary)
                output = self.publisher.store.open_output(job.id)
                undo.callback(output.close)
                limit_cgroups = self.limits.place(job.owner, job.id, job.limits)
                undo.callback(self.limits.release, job.owner, job.id)
                network = self.sandbox.network_for(job.owner)
                undo.callback(self.sandbox.network_done, job.owner, network)
                with self.containment.spawning(job.id, job.owner) as cgroups:
                    plan = JobPlan(job.record.command, job.owner, user, self.layout.home(job.owner),
                                   cgroups + limit_cgroups)
                    environment = job_environment(job.id, self.containment.instance, plan, self.sandbox,
                                                  temporary, job.record.env)
                    spawned = spawn(plan, self.sandbox, environment, network)
                undo.pop_all()
        except (OSError, subprocess.SubprocessError) as error:
            self._could_not_start(job, error)
            return
        scope = self.containment.scope(job.id, job.owner, spawned.pid, lambda: job.main_unreaped)
        launched = Launched(spawned.pid, user, temporary, output, spawned.output_fd, scope, network)
        job.start_running(launched)
        self._jobs_by_pid[spawned.pid] = job
        if pidfds_work():
            launched.stop_watching_exit = watch_exit(spawned.pid, self.reap)
        loop = asyncio.get_running_loop()
        loop.add_reader(spawned.output_fd, self._drain_output, job)
        launched.deadline = loop.call_later(job.limits.timeout_seconds, self._time_limit_reached, job)
        self.publisher.save(job.record)

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
        if job.phase is Phase.QUEUED and self.launching:  # it has its slot still
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
        self.end(job, EndRequest(JobStatus.ERROR, f"time limit of {job.limits.timeout_seconds:g} s exceeded"))

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
        for exit in reap_exited():
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
        await terminate(launched.scope, self.settings.kill_grace, self.child_exits)
        while job.main_exit is None:
            self.reap()
            if job.main_exit is None:  # outside its scope somehow; its pid is still ours, as it is unreaped
                log.warning("job %s: main process %d outlived its scope; killing it", job.id, launched.pid)
                os.kill(launched.pid, signal.SIGKILL)
                await asyncio.sleep(0.001)
        self._drain_remaining_output(job)
        launched.scope.release()
        self.sandbox.network_done(job.owner, launched.network)  # every process of the job is gone
        self._record_usage(job)
        memory_kills = self.limits.memory_kills(job.owner, job.id)
        self.limits.release(job.owner, job.id)
        ended = job.end_request or EndRequest(JobStatus.FINISHED)
        if memory_kills and job.main_exit.code != 0 and ended.status is JobStatus.FINISHED:
            ended = EndRequest(JobStatus.ERROR, f"memory limit of {format_size(job.limits.memory_bytes)} exceeded: "
                                                "the kernel killed a process of the job")
        reasons = [reason for reason in (ended.reason, job.output_error and f"output lost: {job.output_error}")
                   if reason]
        self._settle(job, ended.status, exit_code=job.main_exit.code, signal=job.main_exit.signal,
                     reason="; ".join(reasons) or None)
        self.start_runnable()

    def _record_usage(self, job: Job) -> None:
        """Read what the job has used so far into its record."""
        usage = self.limits.usage(job.owner, job.id)
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
            if job.launched.temporary is not None:
                self._remover.remove(job.launched.temporary)
        job.settle(status, **changes)
        if recorded:
            self.publisher.save(job.record)
        del self.jobs[job.id]
        self.jobs_settled.set()

    async def homes_prepared(self) -> None:
        """Return once no home is being made or mounted (at shutdown, before the homes are unmounted)."""
        await asyncio.gather(*self._homes_preparing.values(), return_exceptions=True)

    def close(self) -> None:
        self._remover.close()
