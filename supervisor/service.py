"""The supervisor: the process that owns every job from acceptance to its final status.

It takes start and stop requests from the front end over the link, admits new jobs (admission.py), drives each
through its life (lifecycle.py), and records every step in the store, which the front end reads. At start-up it
settles the jobs an earlier run left unfinished; at shutdown it ends every job and records how.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.messages import (
    AdoptJob,
    FenceJobs,
    JobReply,
    Message,
    Refusal,
    StartJob,
    StopJob,
    SupervisorClosing,
)
from workerctl.runtime.link import LinkRequest, MessageHandlers, dispatch
from workerctl.runtime.logs import announce
from workerctl.runtime.settings import ServerSettings
from workerctl.store.interface import JobWriter, KeyTaken, StoreError, StoreUnreachable
from workerctl.store.layout import DataLayout
from workerctl.supervisor.accounts import JobAccounts
from workerctl.supervisor.admission import Admission, LimitsPolicy, NewJob, Verdict
from workerctl.supervisor.containment import Containment
from workerctl.supervisor.exits import pidfds_work
from workerctl.supervisor.homes import Homes
from workerctl.supervisor.host import Keeping, SystemHost
from workerctl.supervisor.housekeeping import prune_forever, sweep_strays_forever
from workerctl.supervisor.job import EndRequest
from workerctl.supervisor.leftovers import end_leftovers, settle_unfinished
from workerctl.supervisor.lifecycle import JobLifecycle
from workerctl.supervisor.limits import Limits
from workerctl.supervisor.link import LinkListener
from workerctl.supervisor.pool import JobPool
from workerctl.supervisor.publisher import Publisher
from workerctl.supervisor.sandbox import Sandbox

log = logging.getLogger(__name__)

_REAP_SECONDS = 0.5
_USAGE_SECONDS = 2.0  # how stale a running job's usage may be in its status
_LAST_SAVE_SECONDS = 5.0
_UNKNOWN_HERE = "its host no longer had it (the store had lost writes)"


class Supervisor:
    def __init__(self, settings: ServerSettings, store: JobWriter, containment: Containment,
                 accounts: JobAccounts, sandbox: Sandbox, limits: Limits, homes: Homes, link_address: Path,
                 authkey: bytes, lease_fd: int | None = None) -> None:
        self.settings = settings
        self.store = store
        self.containment = containment
        self.accounts = accounts
        self.link = LinkListener(link_address, authkey, self._on_messages)
        self.publisher = Publisher(store, self.link)
        self.limits = limits
        pool = JobPool(settings.max_jobs, settings.max_jobs_per_user)
        policy = LimitsPolicy(settings.job_timeout, settings.longest_job_timeout, settings.job_memory,
                              settings.job_cpus, settings.job_processes)
        self.admission = Admission(pool, settings.max_queued_per_user, store.find_by_key, policy)
        self.homes = homes
        self.sandbox = sandbox
        self.host = SystemHost(DataLayout(settings.data_dir), containment, limits, sandbox,
                               Keeping(settings.keeper_grace, settings.live_restore, lease_fd))
        self.lifecycle = JobLifecycle(self.host, pool, self.publisher, accounts, homes, settings.kill_grace)
        self._shutdown_requested = asyncio.Event()
        # What the link brings, by kind; new jobs come in batches, each recorded in one transaction.
        self._handlers: MessageHandlers = {StartJob: self._start, StopJob: self._on_stops, AdoptJob: self._on_adopts,
                                           FenceJobs: self._on_fences}

    async def run(self, restart_reason: str) -> None:
        loop = asyncio.get_running_loop()
        if not pidfds_work():
            log.warning("this kernel has no pidfds (Linux 5.3 or newer has them): learning of job exits from "
                        "SIGCHLD instead, which can stall when very many jobs end at once")
            loop.add_signal_handler(signal.SIGCHLD, self.lifecycle.reap)
        loop.add_signal_handler(signal.SIGTERM, self._shutdown_requested.set)
        # Ctrl-C reaches the whole foreground process group; the serve process decides what happens.
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        if self.settings.live_restore:
            self._take_back(restart_reason)
            await self.publisher.saved()  # the jobs that ended meanwhile are recorded before anyone asks
            left: set[str] = set()
        else:
            left = settle_unfinished(self.store, restart_reason)
        self.link.start()  # answering now: what a dead run left is ended meanwhile
        housekeeping = [
            asyncio.create_task(end_leftovers(self.host, left, self.settings.kill_grace,
                                              self.lifecycle.child_exits)),
            asyncio.create_task(self._reap_forever()),
            asyncio.create_task(self._sample_usage_forever()),
            asyncio.create_task(prune_forever(self.store, self.settings.retention_days, self.settings.retention_jobs,
                                              self.lifecycle.jobs_settled)),
            asyncio.create_task(sweep_strays_forever(self.containment, self.lifecycle.live)),
        ]
        announce.info("supervisor ready: %d jobs at once, %d per user, time limit %g s, jobs run as %s",
                      self.settings.max_jobs, self.settings.max_jobs_per_user, self.settings.job_timeout,
                      self.accounts.describe())
        await self._shutdown_requested.wait()
        for task in housekeeping:
            task.cancel()
        await self._shut_down()

    def _take_back(self, restart_reason: str) -> None:
        """Live restore: take back every job an earlier run left running from its keeper, and queue again those
        that waited, in the order they came."""
        unsettled = self.store.unsettled()
        for record in unsettled:
            if record.status is JobStatus.RUNNING:
                self.lifecycle.take_back(record, f"{restart_reason}, and its keeper was gone")
        for record in unsettled:
            if record.status is JobStatus.CREATED:
                self.lifecycle.add(record)
        if unsettled:
            log.info("took back %d jobs an earlier run left running or waiting", len(unsettled))
        self.lifecycle.start_runnable()

    async def _reap_forever(self) -> None:
        """Reap now and then in any case: orphans re-parented to the supervisor have no pidfd watched."""
        while True:
            await asyncio.sleep(_REAP_SECONDS)
            self.lifecycle.reap()

    async def _sample_usage_forever(self) -> None:
        while True:
            await asyncio.sleep(_USAGE_SECONDS)
            self.lifecycle.sample_usage()

    async def _shut_down(self) -> None:
        log.info("supervisor shutting down: ending %d jobs", len(self.lifecycle.jobs))
        self.link.broadcast(SupervisorClosing())  # so the front end answers at once instead of waiting for us
        if self.settings.live_restore:
            await self.lifecycle.detach_all()
        else:
            await self.lifecycle.end_all(EndRequest(JobStatus.ERROR, "server shut down"))
        try:
            await asyncio.wait_for(self.publisher.saved(), _LAST_SAVE_SECONDS)
        except asyncio.TimeoutError:
            log.error("could not record the last job changes before stopping; the next start settles them")
        self.publisher.send_events()
        await self.lifecycle.homes_prepared()
        self.host.close()
        self.sandbox.close()
        running = [job for job in self.lifecycle.jobs.values() if job.launched is not None]
        if running:  # left to their keepers: their homes and cgroups stay for them
            log.info("supervisor leaving %d running jobs to their keepers", len(running))
        else:
            self.homes.close()
            self.limits.close()
            self.containment.close()
        self.link.close()
        self.store.close()
        log.info("supervisor stopped")

    # --- requests from the front end ----------------------------------------------------------------------

    def _on_messages(self, connection: Connection, messages: list[Message]) -> None:
        """Each kind of message to its handler in the table; while shutting down, every request is refused (and
        a fence is pointless: every job is ending)."""
        if not self._shutdown_requested.is_set():
            dispatch(self._handlers, messages, connection)
            return
        for message in messages:
            if isinstance(message, LinkRequest):
                self._refuse(connection, message.request_id, ApiError(ErrorKind.UNAVAILABLE,
                                                                      "the server is shutting down"))

    def _on_fences(self, connection: Connection, fences: list[FenceJobs]) -> None:
        self._fence()

    def _on_adopts(self, connection: Connection, requests: list[AdoptJob]) -> None:
        for request in requests:
            self._adopt(connection, request)

    def _on_stops(self, connection: Connection, requests: list[StopJob]) -> None:
        for request in requests:
            asyncio.create_task(self._stop(connection, request))

    def _fence(self) -> None:
        """End every job whose record is no longer this host's unfinished job: one the lost-host sweep settled
        while this host's lease had lapsed (its relay frozen or restarting, say) must not run on, as it is
        never run again anywhere, nor one stopped or taken over while it waited. Its final save is refused by
        the store, so the record keeps saying why. And settle every record that says this host runs a job it
        does not have (a Redis that lost writes brought it back), which would otherwise say so for ever."""
        try:
            own = {record.id: record for record in self.store.unsettled()}
            fenced = [(job, self.store.get(job.id, job.owner)) for job in list(self.lifecycle.jobs.values())
                      if job.id not in own]
        except StoreError as error:
            log.warning("cannot check whether the jobs are still this host's: %s", error)
            return
        for job, record in fenced:
            why = "its record is gone" if record is None else (
                f"its record says {record.status.value}" + (f", {record.reason}" if record.reason else "")
                + ("" if record.host == self.settings.name else f", on host {record.host}"))
            log.warning("job %s: ending it, as %s", job.id, why)
            self.lifecycle.end(job, EndRequest(JobStatus.ERROR, record.reason if record is not None else None))
        for record in own.values():
            if record.id not in self.lifecycle.jobs and not self.publisher.saving(record.id):
                log.warning("job %s: its record says it is %s on this host, which does not have it; settling it",
                            record.id, record.status.value)
                record.move_to(JobStatus.ERROR, reason=_UNKNOWN_HERE)
                self.publisher.save(record)

    def _adopt(self, connection: Connection, request: AdoptJob) -> None:
        """Take over a job that waits on a lost host: it joins this host's queue as if it had been started here."""
        try:
            record = self.store.adopt(request.job_id, request.user, request.from_host)
        except StoreError as error:
            self._refuse(connection, request.request_id, ApiError(ErrorKind.UNAVAILABLE, str(error)))
            return
        if record is None:
            self._refuse(connection, request.request_id, ApiError(
                ErrorKind.NOT_FOUND, f"no such job waiting on host {request.from_host}"))
            return
        log.info("job %s (user %s): taken over from host %s, which was lost", record.id, record.owner,
                 request.from_host)
        self.admission.limits.bring_within(record)
        self.publisher.save(record)
        self.lifecycle.add(record)
        self.link.send(connection, JobReply(request.request_id, record.id, record.status))
        self.lifecycle.start_runnable()

    def _refuse(self, connection: Connection, request_id: int, error: ApiError) -> None:
        self.link.send(connection, Refusal.of(request_id, error))

    def _start(self, connection: Connection, requests: list[StartJob]) -> None:
        """Record a batch of new jobs in one transaction, answer, then start what the pool allows."""
        try:
            verdicts = self._record_new(self.admission.decide(requests), key_taken_is_final=False)
        except KeyTaken:  # another host recorded a job with one of these keys a moment ago: that job is the answer
            verdicts = self._record_new(self.admission.decide(requests), key_taken_is_final=True)
        created = [verdict.record for verdict in verdicts if isinstance(verdict, NewJob)]
        for record in created:
            log.info("job %s (user %s): created: %.200r", record.id, record.owner, record.command)
            self.lifecycle.add(record)
        for request, verdict in zip(requests, verdicts):
            self._answer(connection, request.request_id, verdict)
        self.lifecycle.start_runnable()

    def _record_new(self, verdicts: list[Verdict], key_taken_is_final: bool) -> list[Verdict]:
        """Record the new jobs among the verdicts in one transaction; the verdicts, those new jobs refused if
        they could not be recorded (KeyTaken raised, unless `key_taken_is_final`)."""
        try:
            for verdict in verdicts:
                if isinstance(verdict, NewJob):
                    self.store.insert(verdict.record)
            self.store.commit()
            return verdicts
        except StoreError as error:
            self.store.rollback()
            if isinstance(error, KeyTaken) and not key_taken_is_final:
                raise
            log.error("cannot record new jobs: %s", error)
            kind = ErrorKind.UNAVAILABLE if isinstance(error, StoreUnreachable) else ErrorKind.STORAGE_FULL
            failure = ApiError(kind, f"the server could not record the job: {error.__cause__ or error}")
            return [failure if isinstance(verdict, NewJob) else verdict for verdict in verdicts]

    def _answer(self, connection: Connection, request_id: int, verdict: Verdict) -> None:
        if isinstance(verdict, ApiError):
            self._refuse(connection, request_id, verdict)
        else:
            self.link.send(connection, JobReply(request_id, verdict.record.id, verdict.record.status))

    async def _stop(self, connection: Connection, request: StopJob) -> None:
        job = self.lifecycle.jobs.get(request.job_id)
        if job is None or job.owner != request.user:
            # A job settled a moment ago may not be committed yet: its record would still say it runs.
            await self.publisher.saved()
            record = self.store.get(request.job_id, request.user)
            if record is None:
                self._refuse(connection, request.request_id, ApiError(ErrorKind.NOT_FOUND, "no such job"))
            else:
                self.link.send(connection, JobReply(request.request_id, record.id, record.status))
            return
        self.lifecycle.end(job, EndRequest(JobStatus.STOPPED))
        status = await asyncio.shield(job.settled)
        await self.publisher.saved()  # so a status asked right after this answer shows it
        self.link.send(connection, JobReply(request.request_id, job.id, status))
