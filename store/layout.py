"""The data directory: one object that knows every path in it, the start-up checks that it is usable, and the
locks that keep two servers (or two supervisors) from owning the same jobs.

    jobs.sqlite3     job records (see records.py)
    output/<job>/    each job's output (see output_log.py)
    homes/<user>/    each user's home, kept between their jobs (homes/<user>.img: its file system, if bounded)
    work/<job>/      each job's private temporary directory where it has no /tmp of its own, removed when it ends
    keepers/<job>/   with live restore, each running job's keeper's socket, the output it held while no
                     supervisor ran, and how the job ended (see supervisor/keepers.py); removed when it is settled
    lease            an agent's lease on its name, as its keepers read it: until when its jobs may run
    agent-holder     with live restore, the agent run that holds the lease, kept for the next run
    id-block         which block of job user IDs this directory's server holds
    job-users.json   which ID of that block each user's jobs run as
    reserve          1 MiB kept free for the records: if the disk fills up, it is deleted so that the jobs
                     running then can still be recorded as they end
    serve.lock       held by the serve process, so one server at a time uses the directory
    supervisor.lock  held by the supervisor, so a new one starts only once the last one has ended its jobs
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

RESERVE_BYTES = 1024 * 1024


class DataDirError(Exception):
    """The data directory cannot be used; the message says why in one sentence."""


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def records(self) -> Path:
        return self.root / "jobs.sqlite3"

    @functools.cached_property  # on the path of every status answer
    def output_root(self) -> Path:
        return self.root / "output"

    def output(self, job_id: str) -> Path:
        return self.output_root / job_id

    @property
    def homes_root(self) -> Path:
        return self.root / "homes"

    def home(self, owner: str) -> Path:
        return self.homes_root / owner

    def home_image(self, owner: str) -> Path:
        return self.homes_root / f"{owner}.img"

    @property
    def id_block(self) -> Path:
        return self.root / "id-block"

    @property
    def job_users(self) -> Path:
        return self.root / "job-users.json"

    @property
    def work_root(self) -> Path:
        return self.root / "work"

    def workdir(self, job_id: str) -> Path:
        return self.work_root / job_id

    @property
    def keepers_root(self) -> Path:
        return self.root / "keepers"

    def keeper(self, job_id: str) -> Path:
        return self.keepers_root / job_id

    @property
    def lease(self) -> Path:
        return self.root / "lease"

    @property
    def agent_holder(self) -> Path:
        return self.root / "agent-holder"

    @property
    def reserve(self) -> Path:
        return self.root / "reserve"

    @property
    def serve_lock(self) -> Path:
        return self.root / "serve.lock"

    @property
    def supervisor_lock(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def instance(self) -> str:
        """A name for the server that uses this directory, stable across its restarts."""
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]

    def create(self) -> None:
        """Create the directories and the reserve if missing; OSError if the directory is not usable."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Jobs run as other users and must reach their own work/<job> directory, so the top is traversable;
        # everything else in it is private to the server's user.
        self.root.chmod(0o711)
        self.output_root.mkdir(mode=0o700, exist_ok=True)
        self.homes_root.mkdir(mode=0o711, exist_ok=True)
        self.work_root.mkdir(mode=0o711, exist_ok=True)
        self.keepers_root.mkdir(mode=0o700, exist_ok=True)
        if not self.reserve.exists() or self.reserve.stat().st_size < RESERVE_BYTES:
            self.reserve.write_bytes(bytes(RESERVE_BYTES))

    def release_reserve(self) -> bool:
        """Free the space reserved for the records; False if it was already freed."""
        try:
            self.reserve.unlink()
            return True
        except FileNotFoundError:
            return False

    def check_reachable_by_others(self) -> None:
        """DataDirError unless users other than the server's can reach the working directories (jobs must
        reach theirs by path, e.g. as $HOME)."""
        for ancestor in [self.work_root.resolve(), *self.work_root.resolve().parents]:
            mode = ancestor.stat().st_mode
            if not mode & stat.S_IXOTH:
                raise DataDirError(f"jobs run as other users cannot reach {self.work_root}: {ancestor} is mode "
                                   f"{stat.S_IMODE(mode):04o}; use a data directory they can reach, such as "
                                   f"/var/lib/workerctl")


def hold_lock(path: Path, wait: float = 0.0) -> int:
    """Take an exclusive lock on `path`, waiting up to `wait` seconds; return its descriptor (keep it open)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise DataDirError(f"{path.parent} is in use by another workerctl server") from None
            time.sleep(0.05)
        else:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
