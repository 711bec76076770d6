"""Which processes belong to a job, and how to kill every one of them.

Two kinds of containment, chosen at start-up:

- `CgroupContainment` puts each job in its own cgroup v2 directory. The kernel keeps every descendant in it
  however it forks, double-forks or calls setsid, and `cgroup.kill` SIGKILLs all members at once, so no fork
  loop can outrun the kill. The job's first process is spawned while the supervisor itself stands in the job's
  cgroup, so it is a member before it can fork.
- `ProcessContainment`, where no writable cgroup v2 hierarchy exists, follows the job's process tree with
  psutil. Because the supervisor is a child subreaper, a double-forked process re-parents to the supervisor
  instead of init; it is recognised by the job's tag in its environment, its process group or its session.
  A process that clears its environment *and* leaves the session cannot be attributed: it is a stray, and is
  killed as soon as it is found.

Both tag each job's environment with the job ID and the server instance, so processes a crashed server left
behind are found at the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from workerctl.supervisor.accounts import DYNAMIC_ID_RANGE

log = logging.getLogger(__name__)

JOB_ENV = "WORKERCTL_JOB_ID"
INSTANCE_ENV = "WORKERCTL_INSTANCE"


class JobScope(ABC):
    """The processes of one job."""

    confirm_empty_after: float | None = None
    """Where membership is pieced together from /proc rather than kept by the kernel: how long to wait before
    looking again to be sure the job has no process left."""

    @abstractmethod
    def processes(self) -> list[psutil.Process]:
        """Every live (not zombie) process of the job now."""

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


class Containment(ABC):
    name: str

    def __init__(self, instance: str) -> None:
        self.instance = instance

    @contextmanager
    def spawning(self, job_id: str) -> Iterator[None]:
        """Spawn the job's first process inside this block."""
        yield

    @abstractmethod
    def scope(self, job_id: str, main: psutil.Process, main_unreaped: Callable[[], bool],
              uid: int | None) -> JobScope:
        """The scope of a job whose first process is `main`; `main_unreaped` says whether its pid is still held;
        `uid` is the job's own user ID, if it has one."""

    def leftovers(self) -> JobScope:
        """Every process an earlier run of this server instance left behind."""
        return _TaggedLeftovers(self.instance)

    def strays(self, live: Mapping[str, int | None]) -> list[psutil.Process]:
        """Processes that escaped every job's scope, given the live jobs and their own user IDs; none where the
        kernel tracks membership."""
        return []

    def close(self) -> None:
        """Tidy up once no job is left."""


class _TaggedLeftovers(JobScope):
    def __init__(self, instance: str) -> None:
        self.instance = instance

    def processes(self) -> list[psutil.Process]:
        return [process for process in psutil.process_iter(["status"])
                if process.info["status"] != psutil.STATUS_ZOMBIE and process.pid != os.getpid()
                and _environ(process).get(INSTANCE_ENV) == self.instance]

    def kill_all(self) -> None:
        signal_all(self.processes(), signal.SIGKILL)


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return {}


# --- cgroup v2 ---------------------------------------------------------------------------------------------


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

    def scope(self, job_id: str, main: psutil.Process, main_unreaped: Callable[[], bool],
              uid: int | None) -> JobScope:
        return _CgroupScope(self.root / job_id)

    def leftovers(self) -> JobScope:
        return _CgroupLeftovers(self.root, super().leftovers())

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


# --- process tree (fallback) -----------------------------------------------------------------------------------


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

    @classmethod
    def current(cls) -> _Reading:
        now = time.monotonic()
        if cls._reading is None or now - cls._reading.taken > cls.max_age:
            reading = _Reading(now, {}, {}, {})
            for process in psutil.process_iter(["ppid", "status", "uids"]):
                if process.info["status"] == psutil.STATUS_ZOMBIE or process.info["uids"] is None:
                    continue
                reading.by_pid[process.pid] = process
                reading.children.setdefault(process.info["ppid"], []).append(process)
                reading.by_uid.setdefault(process.info["uids"].real, []).append(process)
            cls._reading = reading
        return cls._reading

    @classmethod
    def invalidate(cls) -> None:
        cls._reading = None


def _with_descendants(root: psutil.Process, children: dict[int, list[psutil.Process]]) -> list[psutil.Process]:
    found = [root]
    for process in found:
        found.extend(children.get(process.pid, ()))
    return found


def _orphan_belongs_to(process: psutil.Process, job_id: str, main_pid: int) -> bool:
    if _environ(process).get(JOB_ENV) == job_id:
        return True
    try:
        return main_pid in (os.getpgid(process.pid), os.getsid(process.pid))
    except ProcessLookupError:
        return False


class ProcessContainment(Containment):
    name = "process"

    def scope(self, job_id: str, main: psutil.Process, main_unreaped: Callable[[], bool],
              uid: int | None) -> JobScope:
        return _ProcessTreeScope(job_id, main, main_unreaped, uid)

    def strays(self, live: Mapping[str, int | None]) -> list[psutil.Process]:
        reading = _ProcessTable.current()
        live_uids = {uid for uid in live.values() if uid is not None}
        strays: dict[int, psutil.Process] = {}
        for orphan in reading.children.get(os.getpid(), ()):
            if orphan.info["uids"].real not in live_uids and _environ(orphan).get(JOB_ENV) not in live:
                strays.update((process.pid, process) for process in _with_descendants(orphan, reading.children))
        for uid, processes in reading.by_uid.items():
            if uid in DYNAMIC_ID_RANGE and uid not in live_uids:
                strays.update((process.pid, process) for process in processes)
        return list(strays.values())


class _ProcessTreeScope(JobScope):
    """A job's processes: with a user ID of its own, every process with that real user ID (no process can
    shed it without privilege); otherwise its process tree and the orphans that carry its tag, process group
    or session."""

    confirm_empty_after = 0.02

    def __init__(self, job_id: str, main: psutil.Process, main_unreaped: Callable[[], bool],
                 uid: int | None) -> None:
        self.job_id = job_id
        self.main = main
        self.main_unreaped = main_unreaped
        self.uid = uid

    def processes(self) -> list[psutil.Process]:
        reading = _ProcessTable.current()
        if self.uid is not None:
            return list(reading.by_uid.get(self.uid, ()))
        found: dict[int, psutil.Process] = {}
        main = reading.by_pid.get(self.main.pid)
        if main is not None and main == self.main:
            found.update((p.pid, p) for p in _with_descendants(main, reading.children))
        for orphan in reading.children.get(os.getpid(), ()):
            if orphan.pid not in found and orphan.pid != self.main.pid \
                    and _orphan_belongs_to(orphan, self.job_id, self.main.pid):
                found.update((p.pid, p) for p in _with_descendants(orphan, reading.children))
        return list(found.values())

    def kill_all(self) -> None:
        # While the main process is unreaped its pid cannot be reused, so its process group is still the job's.
        if self.main_unreaped():
            try:
                os.killpg(self.main.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        signal_all(self.processes(), signal.SIGKILL)
        _ProcessTable.invalidate()

    def refresh(self) -> None:
        _ProcessTable.invalidate()


def choose_containment(preference: str, instance: str) -> Containment:
    """The containment for `preference` ("auto", "cgroup" or "process"), logging what was chosen and why."""
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
    return ProcessContainment(instance)
