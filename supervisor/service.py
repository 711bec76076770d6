"""The supervisor: the process that owns every job from acceptance to its final status.

It takes start and stop requests from the front end, keeps the pool's limits, spawns each job, drains its
output, enforces its time limit, ends every process of a job that stops, times out or exits leaving others
behind, reaps every child, and records each step. The front end reads the records and output it writes.

Everything runs on one asyncio loop; nothing on it blocks for long, so deadlines fire on time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sqlite3
import subprocess
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from workerctl.protocol import (
    ApiError,
    Conflict,
    InsufficientStorage,
    JobStatus,
    NotFound,
    StartJob,
    StopJob,
    TooManyRequests,
    Unavailable,
    decode_request,
    new_job_id,
)
from workerctl.server.logs import announce
from workerctl.server.settings import ServerSettings
from workerctl.supervisor.accounts import JobAccounts
from workerctl.supervisor.containment import Containment
from workerctl.store.layout import TreeRemover
from workerctl.supervisor.housekeeping import prune_forever, sweep_strays_forever
from workerctl.supervisor.job import EndRequest, Job
from workerctl.supervisor.killing import ChildExits, terminate
from workerctl.supervisor.link import LinkListener
from workerctl.store.output_log import OutputLimits, OutputWriteError, OutputWriter
from workerctl.supervisor.pool import JobPool
from workerctl.supervisor.publisher import Publisher
from workerctl.store.records import JobRecord, RecordWriter, now
from workerctl.supervisor.spawner import make_workdir, spawn

log = logging.getLogger(__name__)

_READ_CHUNK = 1024 * 1024
_REAP_SECONDS = 0.5
_LAST_SAVE_SECONDS = 5.0


class Supervisor:
    def __init__(self, settings: ServerSettings, records: RecordWriter, containment: Containment,
                 accounts: JobAccounts, link_address: Path, authkey: bytes) -> None:
        self.settings = settings
        self.records = records
        self.containment = containment
        self.accounts = accounts
        self.output_limits = OutputLimits.for_cap(settings.max_output_bytes)
        self.output_root = settings.data_dir / "output"
        self.work_root = settings.data_dir / "work"
        self.link = LinkListener(link_address, authkey, self._on_messages)
        self.pool = JobPool(settings.max_jobs, settings.max_jobs_per_user)
        self.jobs: dict[str, Job] = {}  # every job not yet final
        self._jobs_by_pid: dict[int, Job] = {}
        self.publisher = Publisher(records, settings.data_dir, self.link)
        self._shutdown_requested = asyncio.Event()
        self._jobs_settled = asyncio.Event()
        self._child_exits = ChildExits()
        self._to_launch: deque[Job] = deque()
        self._remover = TreeRemover()
        self._launch_handle: asyncio.Handle | None = None

    # --- life of the supervisor ---------------------------------------------------------------------------

    async def run(self, restart_reason: str) -> None:
        loop = asyncio.get_running_loop()
        if not _pidfds_work():
            log.warning("this kernel has no pidfds (Linux 5.3 or newer has them): learning of job exits from "
                        "SIGCHLD instead, which can stall when very many jobs end at once")
            loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGTERM, self._shutdown_requested.set)
        # Ctrl-C reaches the whole foreground process group; the serve process decides what happens.
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        await self._settle_previous_run(restart_reason)
        self.link.start()
        housekeeping = [
            asyncio.create_task(self._reap_forever()),
            asyncio.create_task(prune_forever(self.records, self.output_root, self.settings.retention_days,
                                              self.settings.retention_jobs, self._jobs_settled, self._remover)),
            asyncio.create_task(sweep_strays_forever(self.containment, lambda: {
                job.id: self.accounts.own_uid(job.user) for job in self.jobs.values()})),
        ]
        announce.info("supervisor ready: %d jobs at once, %d per user, time limit %g s, jobs run as %s",
                      self.settings.max_jobs, self.settings.max_jobs_per_user, self.settings.job_timeout,
                      self.accounts.describe())
        await self._shutdown_requested.wait()
        for task in housekeeping:
            task.cancel()
        await self._shut_down()

    async def _settle_previous_run(self, reason: str) -> None:
        """Mark every job an earlier run left unfinished as `error`, and end any process it left behind."""
        unsettled = self.records.unsettled()
        for record in unsettled:
            record.status, record.reason, record.ended_at = JobStatus.ERROR, reason, now()
            self.records.save(record)
        self.records.commit()
        if unsettled:
            log.warning("settled %d jobs an earlier run left unfinished: %s", len(unsettled), reason)
        leftovers = self.containment.leftovers()
        survivors = leftovers.processes()
        if survivors:
            log.warning("ending %d processes an earlier run left behind", len(survivors))
            await terminate(leftovers, self.settings.kill_grace, self._child_exits)
        leftovers.release()

    async def _shut_down(self) -> None:
        log.info("supervisor shutting down: ending %d jobs", len(self.jobs))
        for job in list(self.jobs.values()):
            self._end(job, EndRequest(JobStatus.ERROR, "server shut down"))
        await asyncio.gather(*(job.settled for job in list(self.jobs.values())))
        try:
            await asyncio.wait_for(self.publisher.saved(), _LAST_SAVE_SECONDS)
        except asyncio.TimeoutError:
            log.error("could not record the last job changes before stopping; the next start settles them")
        self.publisher.send_events()
        self.containment.close()
        self.link.close()
        self.records.close()
        log.info("supervisor stopped")

    # --- requests from the front end ----------------------------------------------------------------------

    def _on_messages(self, connection: Connection, messages: list[dict[str, Any]]) -> None:
        starts: list[tuple[int, StartJob]] = []
        for message in messages:
            try:
                request_id, request = decode_request(message)
            except (KeyError, TypeError, ValueError):
                log.error("ignored a malformed message from the front end: %.200r", message)
                continue
            if self._shutting_down:
                self._reply_error(connection, request_id, Unavailable("the server is shutting down"))
            elif isinstance(request, StartJob):
                starts.append((request_id, request))
            else:
                asyncio.create_task(self._stop(connection, request_id, request))
        if starts:
            self._start(connection, starts)

    def _reply(self, connection: Connection, request_id: int, job: dict[str, Any]) -> None:
        self.link.send(connection, {"id": request_id, "job": job})

    def _reply_error(self, connection: Connection, request_id: int, error: ApiError) -> None:
        self.link.send(connection, {"id": request_id, "error": {"status": error.http_status,
                                                                "message": error.message}})

    def _start(self, connection: Connection, requests: list[tuple[int, StartJob]]) -> None:
        """Record a batch of new jobs in one transaction, answer, then start what the pool allows."""
        answers: list[tuple[int, dict[str, Any] | ApiError]] = []
        created: list[JobRecord] = []
        by_key: dict[tuple[str, str], JobRecord] = {}
        queued = {request.user: self.pool.waiting_for(request.user) for _, request in requests}
        for request_id, request in requests:
            key = (request.user, request.idempotency_key) if request.idempotency_key else None
            existing = key and (by_key.get(key) or self.records.find_by_key(*key))
            if existing and existing.command != request.command:
                answers.append((request_id, Conflict(f"idempotencyKey {request.idempotency_key!r} was used for "
                                                     f"another command, job {existing.id}")))
                continue
            if existing:
                answers.append((request_id, {"jobID": existing.id, "status": existing.status.value}))
                continue
            if queued[request.user] >= self.settings.max_queued_per_user:
                answers.append((request_id, TooManyRequests(
                    f"{queued[request.user]} of your jobs are waiting already, the most there may be; start more "
                    f"once some have run")))
                continue
            queued[request.user] += 1
            record = JobRecord(new_job_id(), request.user, request.command, JobStatus.CREATED, now(),
                               idempotency_key=request.idempotency_key)
            self.records.insert(record)
            created.append(record)
            if key:
                by_key[key] = record
            answers.append((request_id, {"jobID": record.id, "status": record.status.value}))
        try:
            self.records.commit()
        except sqlite3.Error as error:
            self.records.rollback()
            log.error("cannot record new jobs: %s", error)
            failure = InsufficientStorage(f"the server could not record the job: {error}")
            new_ids = {record.id for record in created}
            answers = [(request_id, failure if isinstance(answer, dict) and answer["jobID"] in new_ids else answer)
                       for request_id, answer in answers]
            created = []
        for record in created:
            log.info("job %s (user %s): created: %.200r", record.id, record.owner, record.command)
            self.jobs[record.id] = Job(record)
            self.pool.add(record.id, record.owner)
        for request_id, answer in answers:
            if isinstance(answer, ApiError):
                self._reply_error(connection, request_id, answer)
            else:
                self._reply(connection, request_id, answer)
        self._start_runnable()

    async def _stop(self, connection: Connection, request_id: int, request: StopJob) -> None:
        job = self.jobs.get(request.job_id)
        if job is None or job.owner != request.user:
            record = self.records.get(request.job_id)
            if record is None or record.owner != request.user:
                self._reply_error(connection, request_id, NotFound("no such job"))
            else:
                self._reply(connection, request_id, {"jobID": record.id, "status": record.status.value})
            return
        self._end(job, EndRequest(JobStatus.STOPPED))
        status = await asyncio.shield(job.settled)
        await self.publisher.saved()  # so a status asked right after this answer shows it
        self._reply(connection, request_id, {"jobID": job.id, "status": status.value})

    # --- a job's life ---------------------------------------------------------------------------------------

    @property
    def _shutting_down(self) -> bool:
        return self._shutdown_requested.is_set()

    def _start_runnable(self) -> None:
        if self._shutting_down:
            return
        self._to_launch.extend(self.jobs[job_id] for job_id in self.pool.take_runnable())
        if self._to_launch and self._launch_handle is None:
            self._launch_handle = asyncio.get_running_loop().call_soon(self._launch_next)

    def _launch_next(self) -> None:
        """Launch one job, and leave the next for the next turn of the loop: a spawn takes a millisecond or so,
        and exits, answers and events should not wait behind a whole batch of them."""
        self._launch_handle = None
        while self._to_launch:
            job = self._to_launch.popleft()
            if job.status is JobStatus.CREATED and job.id in self.jobs:  # not stopped while it waited
                self._launch(job)
                break
        if self._to_launch:
            self._launch_handle = asyncio.get_running_loop().call_soon(self._launch_next)

    def _launch(self, job: Job) -> None:
        try:
            job.user = self.accounts.acquire()
            job.workdir = make_workdir(self.work_root, job.id, job.user)
            job.output = OutputWriter(self.output_root / job.id, self.output_limits)
            spawned = spawn(job.record.command, job.id, job.user, job.workdir, self.containment)
        except (OSError, subprocess.SubprocessError) as error:
            log.error("job %s could not start: %s", job.id, error)
            self._settle(job, JobStatus.ERROR, reason=f"could not start: {getattr(error, 'strerror', None) or error}")
            asyncio.get_running_loop().call_soon(self._start_runnable)
            return
        job.pid, job.output_fd = spawned.pid, spawned.output_fd
        self._jobs_by_pid[job.pid] = job
        if _pidfds_work():
            job.exit_watch = _watch_exit(job.pid, self._reap)
        job.scope = self.containment.scope(job.id, job.pid, lambda: job.main_unreaped,
                                           self.accounts.own_uid(job.user))
        loop = asyncio.get_running_loop()
        loop.add_reader(job.output_fd, self._drain_output, job)
        job.deadline = loop.call_later(self.settings.job_timeout, self._time_limit_reached, job)
        job.move_to(JobStatus.RUNNING)
        self.publisher.save(job.record)

    def _drain_output(self, job: Job) -> None:
        assert job.output_fd is not None
        try:
            data = os.read(job.output_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if data:
            self._store_output(job, data)
        else:  # every writer has closed it: nothing more can come
            self._close_output(job)

    def _store_output(self, job: Job, data: bytes) -> None:
        if job.output_error is None and job.output is not None:
            try:
                job.output.write(data)
            except OutputWriteError as error:
                job.output_error = error.strerror or str(error)
                log.error("job %s: output lost from byte %d on: %s", job.id, job.output.total, job.output_error)
        self.publisher.output_grew(job.id)

    def _close_output(self, job: Job) -> None:
        if job.output_fd is not None:
            asyncio.get_running_loop().remove_reader(job.output_fd)
            os.close(job.output_fd)
            job.output_fd = None

    def _time_limit_reached(self, job: Job) -> None:
        self._end(job, EndRequest(JobStatus.ERROR, f"time limit of {self.settings.job_timeout:g} s exceeded"))

    def _end(self, job: Job, request: EndRequest) -> None:
        """End a job for the server's reasons: stop it if it waits, else end its processes."""
        if job.status is JobStatus.CREATED:
            self.pool.withdraw(job.id, job.owner)  # if it waits; one about to be launched gives its slot back
            self._settle(job, request.status, reason=request.reason)
        elif job.request_end(request):
            self._wind_down(job)

    async def _reap_forever(self) -> None:
        """Reap now and then in any case: orphans re-parented to the supervisor have no pidfd watched."""
        while True:
            await asyncio.sleep(_REAP_SECONDS)
            self._reap()

    def _reap(self) -> None:
        """Reap every child that has exited. The supervisor is the only one that waits for its children, so
        no exit status is taken by anyone else; orphans re-parented to it are reaped here too.

        Exits are learnt from a pidfd per job, not from SIGCHLD: a thousand children dying together would
        overflow the event loop's signal pipe, and CPython's report of that from inside the signal handler
        can deadlock the process (python/cpython#74236)."""
        self._child_exits.notify()
        while True:
            try:
                exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            if exited is None:
                return
            job = self._jobs_by_pid.pop(exited.si_pid, None)
            if job is not None:
                job.record_exit(exited.si_code, exited.si_status)
                if job.exit_watch is not None:
                    job.exit_watch()
                    job.exit_watch = None
                self._wind_down(job)

    def _wind_down(self, job: Job) -> None:
        if job.winding_down is None:
            job.winding_down = asyncio.create_task(self._finish(job))

    async def _finish(self, job: Job) -> None:
        """End every process of the job, keep the last of its output, and settle it."""
        assert job.scope is not None and job.pid is not None
        if job.deadline is not None:
            job.deadline.cancel()
        await terminate(job.scope, self.settings.kill_grace, self._child_exits)
        while not job.main_exited:
            self._reap()
            if not job.main_exited:  # outside its scope somehow; its pid is still ours, as it is unreaped
                log.warning("job %s: main process %d outlived its scope; killing it", job.id, job.pid)
                os.kill(job.pid, signal.SIGKILL)
                await asyncio.sleep(0.001)
        self._drain_remaining_output(job)
        job.scope.release()
        ended = job.end_request or EndRequest(JobStatus.FINISHED)
        reasons = [reason for reason in (ended.reason, job.output_error and f"output lost: {job.output_error}")
                   if reason]
        self._settle(job, ended.status, exit_code=job.exit_code, signal=job.exit_signal,
                     reason="; ".join(reasons) or None)
        self._start_runnable()

    def _drain_remaining_output(self, job: Job) -> None:
        """Read what the job's processes left in the pipe. None of them is alive, so this ends at EOF at once;
        if something outside the job holds the pipe open, stop at what is there rather than wait."""
        while job.output_fd is not None:
            try:
                data = os.read(job.output_fd, _READ_CHUNK)
            except BlockingIOError:
                log.warning("job %s: its output pipe is held open by a process outside the job", job.id)
                data = b""
            if not data:
                self._close_output(job)
            else:
                self._store_output(job, data)

    def _settle(self, job: Job, status: JobStatus, **changes: Any) -> None:
        """Give the job its final status and let go of everything it held, its slot in the pool included."""
        self.pool.release(job.id)
        if job.output is not None:
            job.output.close()
            changes["output_bytes"] = job.output.total
        job.move_to(status, **changes)
        self.publisher.save(job.record)
        if job.workdir is not None:
            self._remover.remove(job.workdir)
        if job.user is not None:
            self.accounts.release(job.user)
        del self.jobs[job.id]
        job.settled.set_result(status)
        self._jobs_settled.set()


@functools.cache
def _pidfds_work() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def _watch_exit(pid: int, on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call `on_exit` once the process `pid` (a child, not yet reaped) exits; returns what stops watching."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    loop.add_reader(pidfd, on_exit)

    def stop() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return stop
