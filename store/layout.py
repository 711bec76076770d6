"""The data directory: its layout, the start-up check that it is usable, and the locks that keep two servers
(or two supervisors) from owning the same jobs.

    jobs.sqlite3   job records (see records.py)
    output/<job>/  each job's output (see output_log.py)
    work/<job>/    each job's private working directory, owned by the job user, removed when the job ends
    reserve        1 MiB kept free for the records: if the disk fills up, it is deleted so that the jobs
                   running then can still be recorded as they end
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import sqlite3
import stat
import time
from collections import deque
from pathlib import Path

from workerctl.store.records import RecordWriter

SERVE_LOCK = "serve.lock"
SUPERVISOR_LOCK = "supervisor.lock"
RESERVE = "reserve"
RESERVE_BYTES = 1024 * 1024


class DataDirError(Exception):
    """The data directory cannot be used; the message says why in one sentence."""


def prepare(data_dir: Path) -> None:
    """Create the layout if missing and prove it is writable, so storage faults show at start-up."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # Jobs run as another user and must reach their own work/<job> directory, so the top is traversable;
        # everything else in it is private to the server's user.
        data_dir.chmod(0o711)
        (data_dir / "output").mkdir(mode=0o700, exist_ok=True)
        (data_dir / "work").mkdir(mode=0o711, exist_ok=True)
        RecordWriter(data_dir).close()
        reserve = data_dir / RESERVE
        if not reserve.exists() or reserve.stat().st_size < RESERVE_BYTES:
            reserve.write_bytes(bytes(RESERVE_BYTES))
    except OSError as error:
        raise DataDirError(f"data directory {data_dir} is not usable: {error.strerror or error}") from None
    except sqlite3.Error as error:
        raise DataDirError(f"the job records in {data_dir} cannot be opened: {error}") from None


def check_reachable_by_others(directory: Path) -> None:
    """DataDirError unless users other than the server's can reach `directory` (jobs must reach their
    working directories in it by path, e.g. as $HOME)."""
    for ancestor in [directory.resolve(), *directory.resolve().parents]:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise DataDirError(f"jobs run as other users cannot reach {directory}: {ancestor} is mode "
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


def release_reserve(data_dir: Path) -> bool:
    """Free the reserved space for the records; False if it was already freed."""
    try:
        (data_dir / RESERVE).unlink()
        return True
    except FileNotFoundError:
        return False


class TreeRemover:
    """Deletes directory trees in a worker thread, as many as have piled up at a time: the event loop never
    waits on the disk (even an empty directory can take a third of a millisecond), and a job may have left a
    big tree behind."""

    def __init__(self) -> None:
        self._pending: deque[Path] = deque()
        self._removing: asyncio.Future[None] | None = None

    def remove(self, path: Path) -> None:
        self._pending.append(path)
        if self._removing is None:
            self._start()

    def _start(self) -> None:
        self._removing = asyncio.get_running_loop().run_in_executor(None, self._remove_pending)
        self._removing.add_done_callback(self._removed)

    def _remove_pending(self) -> None:
        while self._pending:
            shutil.rmtree(self._pending.popleft(), ignore_errors=True)

    def _removed(self, _: asyncio.Future[None]) -> None:
        self._removing = None
        if self._pending:  # added after the worker's last look
            self._start()
