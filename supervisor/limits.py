"""Resource limits per job and per user, kept by the kernel: memory (swap included where the kernel accounts
for it), CPU (a quota in cores) and processes and threads.

Each job runs in a cgroup of its own inside a cgroup of its user's, so a user's jobs together never take more
than the user's share, and one job never more than its own. Two back ends, one interface:

- cgroup v1 (`CgroupV1Limits`): the memory, cpu, cpuacct and pids hierarchies, each with the same tree
  `workerctl-<instance>/user-<name>/<job>` under this process's own cgroup in it.
- cgroup v2 (`CgroupV2Limits`): the same tree in the unified hierarchy, which containment also uses; it needs
  the memory, cpu and pids controllers enabled for the server's cgroup's children (a delegated cgroup).

Where neither is available, `NoLimits` says so at start-up and jobs run without them. Usage (CPU time, peak
memory) and whether the memory limit killed something are read from the same cgroups.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from workerctl.protocol.limits import JobLimits

log = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000
JOBS_CPU_SHARES = 256  # of a task's 1024
JOBS_CPU_WEIGHT = 25  # of a cgroup's 100
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
_V2_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class UserLimits:
    memory_bytes: int
    cpus: float
    processes: int


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None
    peak_memory_bytes: int | None


def user_dir_name(owner: str) -> str:
    return f"user-{owner}"  # user names are letters, digits, "_", "." and "-", never "/" or "." alone


class Limits(ABC):
    name = "none"

    @abstractmethod
    def place(self, owner: str, job_id: str, limits: JobLimits) -> tuple[Path, ...]:
        """Make the job's cgroups, inside its user's, with their limits; the cgroup.procs files the job's
        first process must join. OSError if they cannot be made."""

    @abstractmethod
    def usage(self, owner: str, job_id: str) -> Usage: ...

    def memory_kills(self, owner: str, job_id: str) -> int:
        """How many of the job's processes its memory limit killed."""
        return 0

    def release(self, owner: str, job_id: str) -> None:
        """Remove the job's cgroups, once none of its processes is left."""

    def close(self) -> None:
        """Remove the users' cgroups and this server's, once no job is left."""

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        """Remove the (empty) cgroups of these jobs an earlier run left, once their processes are ended."""


class NoLimits(Limits):
    def place(self, owner: str, job_id: str, limits: JobLimits) -> tuple[Path, ...]:
        return ()

    def usage(self, owner: str, job_id: str) -> Usage:
        return Usage(None, None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _field(text: str | None, key: str) -> int | None:
    """The number after `key` in a cgroup file of "key value" lines."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def _remove(directory: Path) -> None:
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:  # not empty yet: the next start removes it
        log.warning("cannot remove cgroup %s: %s", directory, error)


class _CgroupTree(Limits):
    """The tree of user and job cgroups under one root per hierarchy, made as jobs need them."""

    def __init__(self, roots: dict[str, Path], user_limits: UserLimits) -> None:
        self.roots = roots  # controller -> this server's root in the hierarchy that has it
        self.user_limits = user_limits
        self._users: set[str] = set()

    def _dirs(self, owner: str, job_id: str | None = None) -> dict[str, Path]:
        return {controller: root / user_dir_name(owner) / (job_id or "") for controller, root in self.roots.items()}

    def place(self, owner: str, job_id: str, limits: JobLimits) -> tuple[Path, ...]:
        if owner not in self._users:
            for controller, directory in self._dirs(owner).items():
                directory.mkdir(parents=True, exist_ok=True)
                self._limit(controller, directory, self.user_limits.memory_bytes, self.user_limits.cpus,
                            self.user_limits.processes)
            self._users.add(owner)
        joins = []
        for controller, directory in self._dirs(owner, job_id).items():
            directory.mkdir(exist_ok=True)
            self._limit(controller, directory, limits.memory_bytes, limits.cpus, limits.processes)
            joins.append(directory / "cgroup.procs")
        return tuple(dict.fromkeys(joins))  # one hierarchy may hold several controllers

    def release(self, owner: str, job_id: str) -> None:
        for directory in set(self._dirs(owner, job_id).values()):
            _remove(directory)

    def close(self) -> None:
        # Every user's, not only those who ran a job since this start: a run that died left its users' too.
        for root in set(self.roots.values()):
            for user in [path for path in root.glob("user-*") if path.is_dir()]:
                _remove(user)
            _remove(root)

    def release_leftovers(self, job_ids: Collection[str]) -> None:
        for root in set(self.roots.values()):
            for user in [path for path in root.glob("user-*") if path.is_dir()]:
                for job in [path for path in user.iterdir() if path.is_dir() and path.name in job_ids]:
                    _remove(job)

    @abstractmethod
    def _limit(self, controller: str, directory: Path, memory: int, cpus: float, processes: int) -> None: ...


class CgroupV1Limits(_CgroupTree):
    name = "cgroup v1"

    @classmethod
    def probe(cls, instance: str, user_limits: UserLimits) -> CgroupV1Limits:
        """The v1 hierarchies with memory, cpu, cpuacct and pids; OSError unless all four are writable here."""
        mounts = _v1_mounts()
        own = _own_cgroups()
        roots = {}
        for controller in _V1_CONTROLLERS:
            if controller not in mounts:
                raise OSError(f"no cgroup v1 hierarchy has the {controller} controller")
            roots[controller] = mounts[controller] / own.get(controller, "").lstrip("/") / f"workerctl-{instance}"
            roots[controller].mkdir(exist_ok=True)
        # Every job together weighs a quarter of one of the server's own processes: busy jobs cannot starve it.
        (roots["cpu"] / "cpu.shares").write_text(str(JOBS_CPU_SHARES))
        return cls(roots, user_limits)

    def _limit(self, controller: str, directory: Path, memory: int, cpus: float, processes: int) -> None:
        if controller == "memory":
            (directory / "memory.limit_in_bytes").write_text(str(memory))
            swap = directory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # memory and swap together: no swap beyond the memory limit
                swap.write_text(str(memory))
        elif controller == "cpu":
            (directory / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (directory / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * CFS_PERIOD_US))))
        elif controller == "pids":
            (directory / "pids.max").write_text(str(processes))

    def usage(self, owner: str, job_id: str) -> Usage:
        dirs = self._dirs(owner, job_id)
        nanoseconds = _read(dirs["cpuacct"] / "cpuacct.usage")
        peak = _read(dirs["memory"] / "memory.max_usage_in_bytes")
        return Usage(int(nanoseconds) / 1e9 if nanoseconds else None, int(peak) if peak else None)

    def memory_kills(self, owner: str, job_id: str) -> int:
        return _field(_read(self._dirs(owner, job_id)["memory"] / "memory.oom_control"), "oom_kill") or 0


class CgroupV2Limits(_CgroupTree):
    name = "cgroup v2"

    @classmethod
    def probe(cls, root: Path, user_limits: UserLimits) -> CgroupV2Limits:
        """Limits in the unified hierarchy under `root` (this server's, which containment makes); OSError unless
        the memory, cpu and pids controllers can be given to its children."""
        available = (root.parent / "cgroup.controllers").read_text().split()
        missing = [controller for controller in _V2_CONTROLLERS if controller not in available]
        if missing:
            raise OSError(f"the cgroup v2 controllers {', '.join(missing)} are not delegated to {root.parent}")
        enabled = (root.parent / "cgroup.subtree_control").read_text().split()
        if not all(controller in enabled for controller in _V2_CONTROLLERS):
            raise OSError(f"{root.parent} does not enable memory, cpu and pids for its children; run the server "
                          "in a delegated cgroup (systemd: Delegate=yes) or in a container's own root cgroup")
        root.mkdir(exist_ok=True)
        _enable_controllers(root)
        (root / "cpu.weight").write_text(str(JOBS_CPU_WEIGHT))
        return cls({controller: root for controller in _V2_CONTROLLERS}, user_limits)

    def place(self, owner: str, job_id: str, limits: JobLimits) -> tuple[Path, ...]:
        if owner not in self._users:
            _enable_controllers(self.roots["memory"] / user_dir_name(owner), create=True)
        return super().place(owner, job_id, limits)

    def _limit(self, controller: str, directory: Path, memory: int, cpus: float, processes: int) -> None:
        if controller == "memory":
            (directory / "memory.max").write_text(str(memory))
            swap = directory / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
            (directory / "memory.oom.group").write_text("1")  # the limit ends the whole job, not a part
        elif controller == "cpu":
            (directory / "cpu.max").write_text(f"{max(1000, int(cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        elif controller == "pids":
            (directory / "pids.max").write_text(str(processes))

    def usage(self, owner: str, job_id: str) -> Usage:
        directory = self._dirs(owner, job_id)["memory"]
        microseconds = _field(_read(directory / "cpu.stat"), "usage_usec")
        peak = _read(directory / "memory.peak")
        return Usage(microseconds / 1e6 if microseconds is not None else None, int(peak) if peak else None)

    def memory_kills(self, owner: str, job_id: str) -> int:
        return _field(_read(self._dirs(owner, job_id)["memory"] / "memory.events"), "oom_kill") or 0


def _enable_controllers(directory: Path, create: bool = False) -> None:
    if create:
        directory.mkdir(exist_ok=True)
    (directory / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in _V2_CONTROLLERS))


def remove_abandoned_v1_trees(instance: str) -> None:
    """Remove this server instance's cgroup v1 trees, whatever of them no process uses: at the end of serve,
    where no supervisor was left to (one killed outright and not yet restarted). The next start would, but a
    data directory may never be started again. Its v2 tree is containment's, and serve removes that too."""
    mounts = _v1_mounts()
    own = _own_cgroups()
    for controller in _V1_CONTROLLERS:
        if controller not in mounts:
            continue
        root = mounts[controller] / own.get(controller, "").lstrip("/") / f"workerctl-{instance}"
        try:
            users = [path for path in root.iterdir() if path.is_dir()]
            jobs = [path for user in users for path in user.iterdir() if path.is_dir()]
        except FileNotFoundError:  # removed at the supervisor's clean stop, or another controller's hierarchy
            continue
        for directory in [*jobs, *users, root]:
            try:
                directory.rmdir()
            except OSError:
                pass  # gone already, or still used: left for the next start


def _v1_mounts() -> dict[str, Path]:
    """Each v1 controller and where its hierarchy is mounted."""
    mounts = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields = after.split()
            if fields and fields[0] == "cgroup":
                for option in fields[2].split(","):
                    mounts.setdefault(option, Path(before.split()[4]))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup in each v1 hierarchy, by controller."""
    own = {}
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller:
                    own[controller] = path
    return own


def choose_limits(instance: str, v2_root: Path | None, user_limits: UserLimits) -> Limits:
    """The limits this host can keep, logging what is in force and, if anything is not, why."""
    problems = []
    if v2_root is not None:
        try:
            chosen: Limits = CgroupV2Limits.probe(v2_root, user_limits)
        except OSError as error:
            problems.append(f"cgroup v2: {error}")
        else:
            log.info("limits: memory, CPU and processes per job and per user (cgroup v2)")
            return chosen
    try:
        chosen = CgroupV1Limits.probe(instance, user_limits)
    except OSError as error:
        problems.append(f"cgroup v1: {error}")
    else:
        log.info("limits: memory, CPU and processes per job and per user (cgroup v1)")
        return chosen
    log.warning("limits: none in force: jobs run without memory, CPU or process limits (%s)", "; ".join(problems))
    return NoLimits()


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
