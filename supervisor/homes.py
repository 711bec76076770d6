"""Each workerctl user's home: a directory kept between their jobs (a `git clone` in one job can be built by the
next), owned by their job account and private to it, at homes/<user> in the data directory.

Where the kernel can mount a file system image (root, a loop device, mkfs.ext4), a home is its own ext4 file
system of `--home-size` in a sparse file beside it (homes/<user>.img), so a job that fills it gets ENOSPC and no
other user, nor the data directory, is touched. Elsewhere a home is a plain directory, and the start-up log
says it is not bounded. Making and mounting a home takes a fraction of a second, once per user and server run:
it happens in a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from workerctl.protocol.sizes import format_size
from workerctl.store.layout import DataLayout
from workerctl.supervisor.accounts import JobUser

log = logging.getLogger(__name__)

_TOOL_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
_TOOL_SECONDS = 60.0
_TOOL_ENVIRONMENT = {"PATH": _TOOL_PATH, "LC_ALL": "C"}


class HomeError(OSError):
    """A home could not be made or mounted; the message says why."""


def _run(tool: str, *arguments: str) -> None:
    """Run a tool as root: with a fixed environment and in "/", so nothing of a job's or a request's reaches it."""
    command = [shutil.which(tool, path=_TOOL_PATH) or tool, *arguments]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_TOOL_SECONDS,
                       env=_TOOL_ENVIRONMENT, cwd="/")
    except subprocess.CalledProcessError as error:
        raise HomeError(f"{tool} failed: {(error.stderr or error.stdout).strip()[-300:]}") from None
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HomeError(f"{tool} failed: {error}") from None


class Homes:
    def __init__(self, layout: DataLayout, size_bytes: int, bounded: bool) -> None:
        self.layout = layout
        self.size_bytes = size_bytes
        self.bounded = bounded
        self._ready: set[str] = set()

    @classmethod
    def choose(cls, layout: DataLayout, size_bytes: int) -> Homes:
        """Bounded homes where this host can mount them; logs which."""
        problem = None
        if os.geteuid() != 0:
            problem = "the server does not run as root"
        elif not Path("/dev/loop-control").exists():
            problem = "this host has no loop devices"
        elif shutil.which("mkfs.ext4", path=_TOOL_PATH) is None:
            problem = "mkfs.ext4 (e2fsprogs) is not installed"
        if problem is None:
            log.info("homes: kept between jobs, each a file system of %s", format_size(size_bytes))
        else:
            log.warning("homes: kept between jobs but not bounded, as %s: a job can fill the data directory's disk",
                        problem)
        return cls(layout, size_bytes, problem is None)

    def ready(self, owner: str) -> bool:
        return owner in self._ready

    def prepare(self, owner: str, user: JobUser) -> Path:
        """Make `owner`'s home if it is missing and mount it if it is bounded; its path. Blocks: run it in a
        worker thread. HomeError if it cannot be done."""
        home = self.layout.home(owner)
        home.mkdir(mode=0o700, exist_ok=True)
        if self.bounded and not os.path.ismount(home):
            image = self.layout.home_image(owner)
            if not image.exists():
                self._make_image(image, user)
            _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(home))
        # By descriptor, and only the home itself: its contents are the job's, links included, and root follows
        # none of them.
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not user.is_self:
                os.fchown(fd, user.uid, user.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        self._ready.add(owner)
        return home

    def _make_image(self, image: Path, user: JobUser) -> None:
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as file:
            file.truncate(self.size_bytes)  # sparse: it takes only what the home holds
        partial.chmod(0o600)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={user.uid}:{user.gid}", str(partial))
        partial.rename(image)

    def close(self) -> None:
        unmount_homes(self.layout)


def unmount_homes(layout: DataLayout) -> None:
    """Unmount every home mounted under the data directory, this run's and any a crashed one left (once every
    job has ended)."""
    for home in _mounts_under(layout.homes_root):
        try:
            _run("umount", str(home))
        except HomeError as error:
            log.warning("cannot unmount the home %s: %s", home, error)


def _mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [Path(point) for point in points if point.startswith(prefix)]
