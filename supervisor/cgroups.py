"""Containment by cgroup v2: each job in a cgroup of its own under this server instance's directory.

The kernel keeps every process a job starts in its cgroup however it forks, double-forks or calls setsid, and
`cgroup.kill` SIGKILLs all members at once, so no fork loop outruns the kill. The job's first process is
spawned while the supervisor itself stands in the job's cgroup, so it is a member before it can fork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from workerctl.supervisor.containment import Containment, JobScope, TaggedLeftovers

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
            with containment._standing_in(probe):
                pass
        finally:
            probe.rmdir()
        return containment

    @contextmanager
    def _standing_in(self, cgroup: Path) -> Iterator[None]:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (self.home / "cgroup.procs").write_text(str(os.getpid()))

    @contextmanager
    def spawning(self, job_id: str) -> Iterator[None]:
        cgroup = self.root / job_id
        cgroup.mkdir()
        try:
            with self._standing_in(cgroup):
                yield
        except BaseException:
            cgroup.rmdir()  # nothing was started in it
            raise

    def scope(self, job_id: str, main_pid: int, main_unreaped: Callable[[], bool],
              uid: int | None) -> JobScope:
        return _CgroupScope(self.root / job_id)

    def leftovers(self) -> JobScope:
        return _CgroupLeftovers(self.root, TaggedLeftovers(self.instance))

    def close(self) -> None:
        try:
            self.root.rmdir()
        except OSError:
            pass  # already gone, or another supervisor of this instance still has jobs in it


class _CgroupScope(JobScope):
    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup

    def processes(self) -> list[psutil.Process]:
        try:
            pids = (self.cgroup / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            return []
        return list(_existing(int(pid) for pid in pids))

    def kill_all(self) -> None:
        try:
            (self.cgroup / "cgroup.kill").write_text("1")
        except FileNotFoundError:
            pass

    def release(self) -> None:
        try:
            self.cgroup.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:  # not empty: a process we could not see; leave it for the next start
            log.warning("cannot remove cgroup %s: %s", self.cgroup, error)


class _CgroupLeftovers(JobScope):
    """Every job cgroup left under this instance's root, and any tagged process outside them."""

    def __init__(self, root: Path, tagged: JobScope) -> None:
        self.root = root
        self.tagged = tagged

    def _scopes(self) -> list[_CgroupScope]:
        try:
            return [_CgroupScope(path) for path in self.root.iterdir() if path.is_dir()]
        except FileNotFoundError:  # removed when the last supervisor stopped cleanly
            return []

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
