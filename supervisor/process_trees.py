"""Containment by process trees, where no writable cgroup v2 hierarchy exists, followed with psutil.

A job with a user ID of its own is every process with that real user ID: no process can shed it without
privilege. A job run as a shared account is its process tree, plus the orphans re-parented to the supervisor
(a child subreaper) that carry its tag in their environment, its process group or its session; a process that
clears its environment *and* leaves the session cannot be attributed, and is killed as a stray when found.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psutil
from workerctl.supervisor.containment import (
    JOB_ENV,
    Containment,
    JobScope,
    environ_of,
    signal_all,
)


@dataclass(frozen=True)
class _Reading:
    taken: float
    children: dict[int, list[psutil.Process]]
    by_pid: dict[int, psutil.Process]
    by_uid: dict[int, list[psutil.Process]]


class _ProcessTable:
    """One reading of the process table, shared by every scope that asks within a few milliseconds: with
    hundreds of jobs ending together, each would otherwise walk all of /proc itself."""

    _reading: _Reading | None = None
    max_age = 0.005
    scans_per_age = 3
    """Where one walk of /proc takes longer than `max_age` (many processes, a busy host), a reading is shared for
    this many times as long as the last walk took. Otherwise every reading would be stale by the time it was
    done, each ending job would walk /proc again at once, and the supervisor would do nothing else: 30 jobs
    timing out together on a loaded host once took 17 s to end, and held up every other answer meanwhile."""
    _walk_seconds = 0.0

    @classmethod
    def current(cls, taken_after: float = 0.0) -> _Reading:
        """A recent reading (see `max_age`), and taken after the monotonic time `taken_after`."""
        now = time.monotonic()
        max_age = max(cls.max_age, cls.scans_per_age * cls._walk_seconds)
        if cls._reading is None or now - cls._reading.taken > max_age or cls._reading.taken <= taken_after:
            reading = _Reading(now, {}, {}, {})
            for process in psutil.process_iter(["ppid", "status", "uids"]):
                if process.info["status"] == psutil.STATUS_ZOMBIE or process.info["uids"] is None:
                    continue
                reading.by_pid[process.pid] = process
                reading.children.setdefault(process.info["ppid"], []).append(process)
                reading.by_uid.setdefault(process.info["uids"].real, []).append(process)
            cls._reading = reading
            cls._walk_seconds = time.monotonic() - now
        return cls._reading



def _with_descendants(root: psutil.Process, children: dict[int, list[psutil.Process]]) -> list[psutil.Process]:
    found = [root]
    for process in found:
        found.extend(children.get(process.pid, ()))
    return found


def _orphan_belongs_to(process: psutil.Process, job_id: str, main_pid: int) -> bool:
    if environ_of(process).get(JOB_ENV) == job_id:
        return True
    try:
        return main_pid in (os.getpgid(process.pid), os.getsid(process.pid))
    except ProcessLookupError:
        return False


class ProcessContainment(Containment):
    name = "process"

    def __init__(self, instance: str, job_uids: range) -> None:
        super().__init__(instance)
        self.job_uids = job_uids  # the user IDs this server's jobs run as, where each user has their own

    def scope(self, job_id: str, owner: str, main_pid: int, main_unreaped: Callable[[], bool]) -> JobScope:
        return _ProcessTreeScope(job_id, psutil.Process(main_pid), main_unreaped)

    def strays(self, live_jobs: Collection[str], live_uids: Collection[int]) -> list[psutil.Process]:
        """Orphans re-parented to the supervisor that belong to no live job, and processes running as one of
        this server's job user IDs whose user has no live job: only ever this server's own."""
        reading = _ProcessTable.current()
        strays: dict[int, psutil.Process] = {}
        for orphan in reading.children.get(os.getpid(), ()):
            if orphan.info["uids"].real not in live_uids and environ_of(orphan).get(JOB_ENV) not in live_jobs:
                strays.update((process.pid, process) for process in _with_descendants(orphan, reading.children))
        for uid, processes in reading.by_uid.items():
            if uid in self.job_uids and uid not in live_uids:
                strays.update((process.pid, process) for process in processes)
        return list(strays.values())


class _ProcessTreeScope(JobScope):
    """A job's processes: its process tree, and the orphans that carry its tag, process group or session."""

    confirm_empty_after = 0.02

    def __init__(self, job_id: str, main: psutil.Process, main_unreaped: Callable[[], bool]) -> None:
        self.job_id = job_id
        self.main = main
        self.main_pid = main.pid
        self.main_unreaped = main_unreaped
        self._fresh_after = 0.0

    def processes(self) -> list[psutil.Process]:
        reading = _ProcessTable.current(self._fresh_after)
        found: dict[int, psutil.Process] = {}
        main = reading.by_pid.get(self.main.pid)
        if main is not None and main == self.main:
            found.update((p.pid, p) for p in _with_descendants(main, reading.children))
        for orphan in reading.children.get(os.getpid(), ()):
            if orphan.pid not in found and orphan.pid != self.main.pid \
                    and _orphan_belongs_to(orphan, self.job_id, self.main.pid):
                found.update((p.pid, p) for p in _with_descendants(orphan, reading.children))
        return list(found.values())

    def process_group(self) -> int | None:
        return self.main_pid if self.main_unreaped() else None

    def kill_all(self) -> None:
        # While the main process is unreaped its pid cannot be reused, so its process group is still the job's.
        if self.main_unreaped():
            try:
                os.killpg(self.main.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        signal_all(self.processes(), signal.SIGKILL)
        self.refresh()

    def refresh(self) -> None:
        # A reading taken after now; scopes refreshing together still share one.
        self._fresh_after = time.monotonic()
