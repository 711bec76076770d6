"""Containment by cgroup v2: each job in a cgroup of its own under this server instance's directory.

The kernel keeps every process a job starts in its cgroup however it forks, double-forks or calls setsid, and
`cgroup.kill` SIGKILLs all members at once, so no fork loop outruns the kill. The job's first process joins
the cgroup itself before it runs any of the job, so the job is a member before it can fork.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from workerctl.supervisor.containment import Containment, JobScope, TaggedLeftovers
from workerctl.supervisor.limits import user_dir_name

log = logging.getLogger(__name__)



def _cgroup2_home() -> Path | None:
    """This process's own directory in the cgroup v2 hierarchy, if one is mounted."""
    mount_point = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            if after.split(" ", 1)[0] == "cgroup2":
                mount_point = before.split(" ")[4]
                break
    if mount_point is None:
        return None
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            if line.startswith("0::"):
                return Path(mount_point + line[3:].strip()).resolve()
    return None


class CgroupContainment(Containment):
    name = "cgroup"

    def __init__(self, instance: str, home: Path) -> None:
        super().__init__(instance)
        self.home = home
        self.root = home / f"workerctl-{instance}"

    @classmethod
    def probe(cls, instance: str) -> CgroupContainment:
        """Set up under this process's cgroup, proving we can create, join and kill; OSError if not."""
        home = _cgroup2_home()
        if home is None:
            raise OSError("no cgroup v2 hierarchy is mounted")
        containment = cls(instance, home)
        containment.root.mkdir(exist_ok=True)
        probe = containment.root / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        try:
            if not (probe / "cgroup.kill").exists():
                raise OSError("this kernel's cgroups have no cgroup.kill (Linux 5.14 or newer has it)")
            # Join the probe and come back: proves processes can be put in the job cgroups made here.
            (probe / "cgroup.procs").write_text(str(os.getpid()))
            (home / "cgroup.procs").write_text(str(os.getpid()))
        finally:
            probe.rmdir()
        return containment

    def job_cgroup(self, job_id: str, owner: str) -> Path:
        return self.root / user_dir_name(owner) / job_id

    @contextmanager
    def spawning(self, job_id: str, owner: str) -> Iterator[tuple[Path, ...]]:
        # The job's first process moves itself into the job's cgroup (writing 0 to cgroup.procs moves the
        # writer), as root and before anything of the job runs. The move waits on a lock the whole kernel
        # shares, for milliseconds at times: done there, it delays this job alone, not the supervisor's loop.
        cgroup = self.job_cgroup(job_id, owner)
        cgroup.mkdir(parents=True, exist_ok=True)  # limits may have made it, to set them
        try:
            yield (cgroup / "cgroup.procs",)
        except BaseException:
            cgroup.rmdir()  # nothing was started in it
            raise

    def scope(self, job_id: str, owner: str, main_pid: int, main_unreaped: Callable[[], bool]) -> JobScope:
        return _CgroupScope(self.job_cgroup(job_id, owner), main_pid, main_unreaped)

    def leftovers(self, job_ids: Collection[str] | None = None) -> JobScope:
        return _CgroupLeftovers(self.root, TaggedLeftovers(self.instance, job_ids), job_ids)

    def close(self) -> None:
        for directory in [*(path for path in self.root.glob("*") if path.is_dir()), self.root]:
            try:
                directory.rmdir()
            except OSError:
                pass  # already gone, or another supervisor of this instance still has jobs in it


class _CgroupScope(JobScope):
    """The members of a job's cgroup, and its first process until it has joined them (for its first
    moments it has not; its pid is safe to signal while the supervisor has not reaped it)."""

    def __init__(self, cgroup: Path, main_pid: int = 0, main_unreaped: Callable[[], bool] = lambda: False) -> None:
        self.cgroup = cgroup
        self.main_pid = main_pid
        self.main_unreaped = main_unreaped

    def _pids(self) -> set[int]:
        try:
            pids = {int(pid) for pid in (self.cgroup / "cgroup.procs").read_text().split()}
        except FileNotFoundError:
            pids = set()
        if self.main_unreaped():
            pids.add(self.main_pid)
        return pids

    def processes(self) -> list[psutil.Process]:
        return list(_existing(self._pids()))

    def process_group(self) -> int | None:
        return self.main_pid if self.main_pid and self.main_unreaped() else None

    def is_empty(self) -> bool:
        # Reading cgroup.procs, then finding a listed process dead, proves nothing: it may have forked just
        # before it died, and its child joined the list after it was read. The kernel's count cannot miss it.
        try:
            populated = (self.cgroup / "cgroup.events").read_text().split()[1] == "1"
        except FileNotFoundError:
            populated = False
        return not populated and not (self.main_unreaped() and list(_existing([self.main_pid])))

    def kill_all(self) -> None:
        try:
            (self.cgroup / "cgroup.kill").write_text("1")
        except FileNotFoundError:
            pass
        if self.main_unreaped():
            os.kill(self.main_pid, signal.SIGKILL)

    def release(self) -> None:
        try:
            self.cgroup.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:  # not empty: a process we could not see; leave it for the next start
            log.warning("cannot remove cgroup %s: %s", self.cgroup, error)


class _CgroupLeftovers(JobScope):
    """The job cgroups left under this instance's root (of the jobs `job_ids`, if given), and any tagged
    process outside them."""

    def __init__(self, root: Path, tagged: JobScope, job_ids: Collection[str] | None) -> None:
        self.root = root
        self.tagged = tagged
        self.job_ids = job_ids

    def _scopes(self) -> list[_CgroupScope]:
        """The cgroups under the root: those jobs', or every user's and job's (jobs first, so that removing
        works)."""
        try:
            users = [path for path in self.root.iterdir() if path.is_dir()]
            jobs = [path for user in users for path in user.iterdir() if path.is_dir()]
        except FileNotFoundError:  # removed when the last supervisor stopped cleanly
            return []
        if self.job_ids is not None:
            return [_CgroupScope(path) for path in jobs if path.name in self.job_ids]
        return [_CgroupScope(path) for path in jobs + users]

    def processes(self) -> list[psutil.Process]:
        found = {process.pid: process for process in self.tagged.processes()}
        for scope in self._scopes():
            found.update((process.pid, process) for process in scope.processes())
        return list(found.values())

    def kill_all(self) -> None:
        for scope in self._scopes():
            scope.kill_all()
        self.tagged.kill_all()

    def release(self) -> None:
        for scope in self._scopes():
            scope.release()


def _existing(pids: Iterable[int]) -> Iterator[psutil.Process]:
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                yield process
        except psutil.NoSuchProcess:
            pass
