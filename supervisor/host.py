"""What the supervisor asks of the operating system for its jobs, in one interface: start a job's first process,
learn of exits and reap them, kill, read a job's usage, take back from their keepers the jobs an earlier run
left running (live restore), and find and release what an earlier run left.
Signalling and listing a job's processes go through the `JobScope` that `start` hands out (containment.py).

`SystemHost` is the real one, over containment, limits, the sandbox and the spawner. Tests simulate one
(tests/simulated_host.py), so that the life cycle's timing is tested in virtual time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workerctl.store.interface import JobRecord
from workerctl.store.layout import DataLayout
from workerctl.store.remover import TreeRemover
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import Containment, JobScope
from workerctl.supervisor.exits import Exit, pidfds_work, reap_exited, watch_exit
from workerctl.supervisor.keepers import Attachment, Ended, KeeperPlan, attach, ended, lease_held
from workerctl.supervisor.limits import JobLimits, Limits, Usage
from workerctl.supervisor.sandbox import JobPlan, Sandbox
from workerctl.supervisor.spawner import job_environment, make_private_directory, spawn


@dataclass(frozen=True)
class Started:
    """A job's first process, just started, and what the host holds for the job meanwhile."""

    pid: int
    output_fd: int  # the read end of the job's stdout+stderr pipe, non-blocking
    scope: JobScope
    release: Callable[[], None]
    """Hands back what the host holds for the job (cgroups, network, temporary directory), once none of its
    processes is left."""
    control: socket.socket | None = None  # the control connection to its keeper, if it has one (keepers.py)


@dataclass(frozen=True)
class TakenBack:
    """A job an earlier run of the supervisor left running, connected again to its keeper."""

    attachment: Attachment
    scope: JobScope
    release: Callable[[], None]


@dataclass(frozen=True)
class Keeping:
    """What every job's keeper is asked to do here: end its job `grace` seconds after SIGTERM when it ends it
    itself; keep it running while no supervisor runs (`live_restore`); end it when the lease in the file open
    as `lease_fd` lapses (an agent's)."""

    grace: float
    live_restore: bool = False
    lease_fd: int | None = None


class JobHost(Protocol):
    """What the supervisor asks of the operating system for its jobs."""

    def start(self, record: JobRecord, user: JobUser, limits: JobLimits,
              main_unreaped: Callable[[], bool]) -> Started:
        """Start the job's first process as `user`, within `limits`; `main_unreaped` says whether its pid is
        still held. OSError or SubprocessError if it cannot start, with nothing of it left."""

    def watch_exit(self, pid: int, on_exit: Callable[[], None]) -> Callable[[], None] | None:
        """Call `on_exit` once the child `pid` exits; what stops watching, or None where exits cannot be
        watched (a periodic reap, or SIGCHLD, learns of them then)."""

    def reap(self) -> list[Exit]:
        """Reap every child that has exited: jobs' first processes and orphans re-parented here alike."""

    def kill(self, pid: int) -> None:
        """SIGKILL the child `pid`, not yet reaped."""

    def usage(self, owner: str, job_id: str) -> Usage:
        """What the job has used so far (CPU time, peak memory), as its cgroups count it."""

    def memory_kills(self, owner: str, job_id: str) -> int:
        """How many of the job's processes its memory limit killed."""

    def lease_held(self) -> bool:
        """Whether this host may start jobs: an agent's, while the lease its keepers read is not lapsed (a job
        started after would be ended at once, its record being another host's to take over)."""

    def take_back(self, record: JobRecord, main_unreaped: Callable[[], bool]) -> TakenBack | Ended:
        """Connect to the keeper of a job an earlier run left running; if it is no longer running, how the job
        ended (`release_kept` then hands back what the host holds for it)."""

    def keeper_ended(self, record: JobRecord) -> Ended:
        """How a job that was taken back ended, as its keeper recorded it, once the keeper is gone."""

    def release_kept(self, record: JobRecord) -> None:
        """Hand back what the host held for a job taken back that had ended, once none of its processes is left."""

    def leftovers(self, job_ids: Collection[str]) -> JobScope:
        """The processes an earlier run of this server left behind of these jobs."""

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        """Remove the cgroups (and keepers' directories) an earlier run left of these jobs, once their processes
        are ended."""


class SystemHost:
    """The host this supervisor runs on, through the containment, limits and sandbox chosen at start-up."""

    def __init__(self, layout: DataLayout, containment: Containment, limits: Limits, sandbox: Sandbox,
                 keeping: Keeping) -> None:
        self.layout = layout
        self.containment = containment
        self.limits = limits
        self.sandbox = sandbox
        self.keeping = keeping
        self._remover = TreeRemover()

    def start(self, record: JobRecord, user: JobUser, limits: JobLimits,
              main_unreaped: Callable[[], bool]) -> Started:
        with contextlib.ExitStack() as undo:  # hands back what was acquired if a later step fails
            temporary = None
            if not self.sandbox.namespaces:  # no /tmp of its own: a directory of its own instead
                temporary = make_private_directory(self.layout.workdir(record.id), user)
                undo.callback(self._remover.remove, temporary)
            limit_cgroups = self.limits.place(record.owner, record.id, limits)
            undo.callback(self.limits.release, record.owner, record.id)
            network = self.sandbox.network_for(record.owner)
            undo.callback(self.sandbox.network_done, record.owner, network)
            kept_in = None
            if self.keeping.live_restore and self.sandbox.keeps_jobs:
                kept_in = self._keeper_directory(record.id)
                undo.callback(self._remover.remove, kept_in)
            keeper = KeeperPlan(self.keeping.grace, self.keeping.lease_fd, kept_in, limits.timeout_seconds)
            with self.containment.spawning(record.id, record.owner) as cgroups:
                plan = JobPlan(record.command, record.owner, user, self.layout.home(record.owner),
                               cgroups + limit_cgroups)
                environment = job_environment(record.id, self.containment.instance, plan, self.sandbox,
                                              temporary, record.env)
                spawned = spawn(plan, self.sandbox, environment, network, keeper)
            held = undo.pop_all()
        scope = self.containment.scope(record.id, record.owner, spawned.pid, main_unreaped)
        held.callback(scope.release)
        return Started(spawned.pid, spawned.output_fd, scope, held.close, spawned.control)

    def _keeper_directory(self, job_id: str) -> Path:
        directory = self.layout.keeper(job_id)
        directory.mkdir(mode=0o700, exist_ok=True)  # left by an attempt that could not start
        return directory

    def lease_held(self) -> bool:
        return self.keeping.lease_fd is None or lease_held(self.keeping.lease_fd)

    def take_back(self, record: JobRecord, main_unreaped: Callable[[], bool]) -> TakenBack | Ended:
        directory = self.layout.keeper(record.id)
        attachment = attach(directory)
        if attachment is None:
            return ended(directory)
        scope = self.containment.scope(record.id, record.owner, attachment.keeper_pid, main_unreaped)

        def release() -> None:
            scope.release()
            self.release_kept(record)
        return TakenBack(attachment, scope, release)

    def keeper_ended(self, record: JobRecord) -> Ended:
        return ended(self.layout.keeper(record.id))

    def release_kept(self, record: JobRecord) -> None:
        self.limits.release(record.owner, record.id)
        self._remover.remove(self.layout.keeper(record.id))

    def watch_exit(self, pid: int, on_exit: Callable[[], None]) -> Callable[[], None] | None:
        return watch_exit(pid, on_exit) if pidfds_work() else None

    def reap(self) -> list[Exit]:
        return reap_exited()

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def usage(self, owner: str, job_id: str) -> Usage:
        return self.limits.usage(owner, job_id)

    def memory_kills(self, owner: str, job_id: str) -> int:
        return self.limits.memory_kills(owner, job_id)

    def leftovers(self, job_ids: Collection[str]) -> JobScope:
        return self.containment.leftovers(job_ids)

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        self.limits.release_leftovers(job_ids)
        for job_id in job_ids:  # a run with live restore left them
            self._remover.remove(self.layout.keeper(job_id))

    def close(self) -> None:
        """Return once every temporary directory handed back is removed."""
        self._remover.close()
