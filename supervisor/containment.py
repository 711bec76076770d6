"""Which processes belong to a job, and how to kill every one of them.

Two kinds of containment, chosen at start-up (see cgroups.py and process_trees.py):

- `CgroupContainment` puts each job in its own cgroup v2 directory. The kernel keeps every descendant in it
  however it forks, double-forks or calls setsid, and `cgroup.kill` SIGKILLs all members at once, so no fork
  loop can outrun the kill. The job's first process joins the cgroup before any of the job runs, so the job is
  a member before it can fork.
- `ProcessContainment`, where no writable cgroup v2 hierarchy exists, follows processes with psutil: a job
  with a user ID of its own is every process with that ID; a job run as a shared account is its process tree
  and the orphans (re-parented to the supervisor, a child subreaper) that carry its tag, process group or
  session.

Both tag each job's environment with the job ID and the server instance, so processes a crashed server left
behind are found at the next start.
"""

from __future__ import annotations

import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

JOB_ENV = "WORKERCTL_JOB_ID"
INSTANCE_ENV = "WORKERCTL_INSTANCE"


class JobScope(ABC):
    """The processes of one job."""

    main_pid = 0
    """The job's first process, where the scope is one job's."""

    confirm_empty_after: float | None = None
    """Where membership is pieced together from /proc rather than kept by the kernel: how long to wait before
    looking again to be sure the job has no process left."""

    @abstractmethod
    def processes(self) -> list[psutil.Process]:
        """Every live (not zombie) process of the job now."""

    def process_group(self) -> int | None:
        """The job's own process group (its first process's), while that process is unreaped and so the
        group's ID cannot be another's; None where there is none to signal."""
        return None

    def is_empty(self) -> bool:
        """Whether the job has no process left. Where the kernel keeps count, it answers, which also covers a
        child whose fork is finishing while its parent dies; a listing can miss that child."""
        return not self.processes()

    def send_sigterm(self, processes: list[psutil.Process], whole_group: bool) -> None:
        """SIGTERM `processes` of the job, each after its parent; with `whole_group`, the job's own process
        group first, all at once, and then only those outside it."""
        group = self.process_group() if whole_group else None
        if group is not None:
            # The job's own process group all at once: signalled one by one, a child could die first and its
            # parent (a shell) wake and carry on, past its `wait` or printing "Terminated", before its own
            # SIGTERM arrived. The sandbox helper and its init hold the signal rather than drop it, so a
            # command that init is starting at this moment gets it too (see sandbox_helper.c). Who left the
            # group (setsid), or was forked by a parent holding the signal blocked, is signalled on its own.
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                group = None
        outside = [process for process in processes if group is None or _group_of(process) != group]
        signal_all(parents_first(outside), signal.SIGTERM)

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process of the job."""

    def release(self) -> None:
        """Forget the job once it has no processes left."""

    def refresh(self) -> None:
        """Look at the processes afresh next time, not at a recent reading."""


def signal_all(processes: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        try:
            process.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # already gone, or not ours to signal


def parents_first(processes: list[psutil.Process]) -> list[psutil.Process]:
    """`processes` with each one after its parent, where both are listed, so a parent signalled one by one gets
    its signal before its child can die of one. Their pids are no guide: pids wrap around (at 32,768 by default),
    and a child can have a smaller pid than its parent."""
    parent_of = {process.pid: _parent_of(process) for process in processes}

    def depth(pid: int) -> int:
        steps = 0
        while (pid := parent_of.get(pid, 0)) in parent_of and steps < len(parent_of):
            steps += 1
        return steps
    return sorted(processes, key=lambda process: depth(process.pid))


def _parent_of(process: psutil.Process) -> int:
    try:
        return process.ppid()
    except psutil.Error:
        return 0


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


class Containment(ABC):
    name: str

    def __init__(self, instance: str) -> None:
        self.instance = instance

    @contextmanager
    def spawning(self, job_id: str, owner: str) -> Iterator[tuple[Path, ...]]:
        """Spawn the job's first process inside this block; it must join the cgroups whose cgroup.procs files
        this yields before anything of the job runs."""
        yield ()

    @abstractmethod
    def scope(self, job_id: str, owner: str, main_pid: int, main_unreaped: Callable[[], bool]) -> JobScope:
        """The scope of `owner`'s job whose first process is `main_pid`; `main_unreaped` says whether that pid
        is held."""

    def leftovers(self, job_ids: Collection[str] | None = None) -> JobScope:
        """The processes an earlier run of this server instance left behind: of these jobs, or of every job
        (only while no supervisor runs: jobs started since carry the same instance tag)."""
        return TaggedLeftovers(self.instance, job_ids)

    def strays(self, live_jobs: Collection[str], live_uids: Collection[int]) -> list[psutil.Process]:
        """Processes of this server's that escaped every job's scope, given the live jobs and the user IDs
        their jobs run as; none where the kernel tracks membership."""
        return []

    def close(self) -> None:
        """Tidy up once no job is left."""


class TaggedLeftovers(JobScope):
    """Processes of this server instance, of the jobs `job_ids` if given, found by the tags in their
    environment."""

    def __init__(self, instance: str, job_ids: Collection[str] | None = None) -> None:
        self.instance = instance
        self.job_ids = job_ids

    def processes(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["status"]):
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                continue
            environment = environ_of(process)
            if environment.get(INSTANCE_ENV) == self.instance and (
                    self.job_ids is None or environment.get(JOB_ENV) in self.job_ids):
                found.append(process)
        return found

    def kill_all(self) -> None:
        signal_all(self.processes(), signal.SIGKILL)


def environ_of(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return {}


def choose_containment(preference: str, instance: str, job_uids: range) -> Containment:
    """The containment for `preference` ("auto", "cgroup" or "process"), logging what was chosen and why;
    `job_uids` are the user IDs this server gives its jobs, if each gets its own."""
    # Imported here: both build on this module's base classes.
    from workerctl.supervisor.cgroups import CgroupContainment
    from workerctl.supervisor.process_trees import ProcessContainment

    if preference in ("auto", "cgroup"):
        try:
            containment = CgroupContainment.probe(instance)
            log.info("containment: one cgroup per job under %s", containment.root)
            return containment
        except OSError as error:
            if preference == "cgroup":
                raise
            log.warning("containment: cgroups unavailable (%s); following process trees with psutil instead, "
                        "where a process that clears its environment and leaves the session is killed as a "
                        "stray", error)
    else:
        log.info("containment: following process trees with psutil")
    return ProcessContainment(instance, job_uids)
