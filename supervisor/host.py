"""What the supervisor asks of the operating system for its jobs, in one interface: start a job's first process,
learn of exits and reap them, kill, read a job's usage, and find and release what an earlier run left.
Signalling and listing a job's processes go through the `JobScope` that `start` hands out (containment.py).

`SystemHost` is the real one, over containment, limits, the sandbox and the spawner. Tests simulate one
(tests/simulated_host.py), so that the life cycle's timing is tested in virtual time.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from workerctl.store.interface import JobRecord
from workerctl.store.layout import DataLayout
from workerctl.store.remover import TreeRemover
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import Containment, JobScope
from workerctl.supervisor.exits import Exit, pidfds_work, reap_exited, watch_exit
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

    def leftovers(self, job_ids: Collection[str]) -> JobScope:
        """The processes an earlier run of this server left behind of these jobs."""

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        """Remove the cgroups an earlier run left of these jobs, once their processes are ended."""


class SystemHost:
    """The host this supervisor runs on, through the containment, limits and sandbox chosen at start-up."""

    def __init__(self, layout: DataLayout, containment: Containment, limits: Limits, sandbox: Sandbox) -> None:
        self.layout = layout
        self.containment = containment
        self.limits = limits
        self.sandbox = sandbox
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
            with self.containment.spawning(record.id, record.owner) as cgroups:
                plan = JobPlan(record.command, record.owner, user, self.layout.home(record.owner),
                               cgroups + limit_cgroups)
                environment = job_environment(record.id, self.containment.instance, plan, self.sandbox,
                                              temporary, record.env)
                spawned = spawn(plan, self.sandbox, environment, network)
            held = undo.pop_all()
        scope = self.containment.scope(record.id, record.owner, spawned.pid, main_unreaped)
        held.callback(scope.release)
        return Started(spawned.pid, spawned.output_fd, scope, held.close)

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

    def close(self) -> None:
        """Return once every temporary directory handed back is removed."""
        self._remover.close()
