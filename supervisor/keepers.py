"""A job's keeper, as the supervisor sees it: what to ask of it when the job starts, and how to take a job back
from it after the supervisor was away.

The keeper is the sandbox helper's outer process (sandbox_helper.c), the parent of the job's PID namespace, in
the spirit of podman's conmon and Slurm's slurmstepd: it outlives the supervisor, so a job does not end with
the server. Each one holds a control connection to the supervisor (a SOCK_SEQPACKET socket pair); when that
connection closes, the supervisor is gone, and the keeper either ends the job (the default: a server's stop or
crash ends its jobs) or, with live restore, keeps it running: it holds the job's output in a spool file
(stopping the job's writes at a cap rather than lose any), ends it at its time limit, and records how it
ended. A later supervisor connects to its socket and gets a hello, the output pipe and the spool back.
In a cluster the keeper also ends its job when the host's lease, as the agent last renewed it, is about to
lapse (cluster/fencing.py): a host that cannot reach Redis, or is stalled, fences itself.

Its files, in keepers/<job>/ of the data directory:
    keeper.sock   the socket a supervisor connects to (while the job runs)
    spool         what the job wrote while no supervisor was attached, not yet taken
    exit          "status <wait status>" and "ended-by <none|time-limit|fence>", once the job has ended
"""

from __future__ import annotations

import enum
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from workerctl.runtime.settings import ServerSettings
from workerctl.store.layout import DataLayout
from workerctl.supervisor.exits import Exit

SOCKET_NAME = "keeper.sock"
SPOOL_NAME = "spool"
EXIT_NAME = "exit"
SPOOL_CAP_BYTES = 64 * 1024 * 1024
"""The most a keeper holds of a job's output while no supervisor runs; past it, the job waits to write."""

# The keeper's hello to a supervisor that connects: spool bytes, nanoseconds since the keeper started (on
# CLOCK_BOOTTIME), its pid, and whether it is ending the job already (Ending).
_HELLO = struct.Struct("=QQii")
CONSUMED = b"c"  # to the keeper: the spool is taken, empty it
FENCED = b"F"  # from the keeper: the host's lease is about to lapse, and it is ending the job
_HELLO_SECONDS = 2.0  # a keeper answers at once; one that does not is taken for ended
LEASE = struct.Struct("=qq")
"""The lease file an agent writes and its keepers read (cluster/fencing.py): until when its jobs may run, in
nanoseconds of CLOCK_BOOTTIME, then that number's complement."""
_LEASE_READS = 4  # a read may catch half of an in-place write; a few more outlast it


def boot_time_ns() -> int:
    """Now on the clock of the lease and the keepers' deadlines: CLOCK_BOOTTIME, which every process of the host
    shares, which counts suspended time and never jumps."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Ending(enum.IntEnum):
    """Why a keeper ended (or is ending) its job itself."""

    NONE = 0
    TIME_LIMIT = 1
    FENCE = 2


_ENDED_BY = {"none": Ending.NONE, "time-limit": Ending.TIME_LIMIT, "fence": Ending.FENCE}


@dataclass(frozen=True)
class KeeperPlan:
    """What a job's keeper is asked to do: end it `grace` seconds after SIGTERM when it ends it itself; with
    `lease_fd`, end it when the lease in that file lapses; with `directory`, keep it running without a
    supervisor (live restore), within `timeout` seconds of its start."""

    grace: float
    lease_fd: int | None
    directory: Path | None
    timeout: float

    def options(self, control_fd: int, output_fd: int) -> tuple[list[str], tuple[int, ...]]:
        """The helper's options for this plan, and the descriptors it must inherit."""
        options = ["-k", str(control_fd), "-G", str(round(self.grace * 1000))]
        fds = [control_fd]
        if self.lease_fd is not None:
            options += ["-l", str(self.lease_fd)]
            fds.append(self.lease_fd)
        if self.directory is not None:
            options += ["-r", str(self.directory), "-O", str(output_fd), "-T", str(round(self.timeout * 1000)),
                        "-P", str(SPOOL_CAP_BYTES)]
            fds.append(output_fd)
        return options, tuple(fds)


def control_pair() -> tuple[socket.socket, socket.socket]:
    """A new control connection: the supervisor's end, and the keeper's."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@dataclass
class Attachment:
    """A running job's keeper, connected to this supervisor: the job's output pipe (None if every writer has
    closed it), what it spooled meanwhile, and how long ago it started the job."""

    control: socket.socket
    keeper_pid: int
    output_fd: int | None
    spool: bytes
    elapsed: float
    ending: Ending


@dataclass(frozen=True)
class Ended:
    """A job whose keeper is no longer running: how it ended, as the keeper recorded it (None where it
    recorded nothing: it was killed, or the host restarted), and what it spooled."""

    exit: Exit | None
    ended_by: Ending
    spool: bytes
    ended_at: float | None = None  # when it recorded it (Unix time): when the job ended


def attach(directory: Path) -> Attachment | None:
    """Connect to the keeper of a job that ran while no supervisor did; None if it is not running (it has
    ended, or the host restarted). Call `consumed` once its spool is stored."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # By the directory's descriptor: a socket's path may have 108 bytes, a data directory's more.
        directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            control.connect(f"/proc/self/fd/{directory_fd}/{SOCKET_NAME}")
        finally:
            os.close(directory_fd)
        control.settimeout(_HELLO_SECONDS)
        hello, fds, _, _ = socket.recv_fds(control, _HELLO.size, 1)
    except OSError:  # no directory or socket, nobody listening, or it ended as we connected
        control.close()
        return None
    if len(hello) != _HELLO.size:
        control.close()
        for fd in fds:
            os.close(fd)
        return None
    spool_bytes, elapsed_ns, keeper_pid, ending = _HELLO.unpack(hello)
    control.setblocking(False)
    return Attachment(control, keeper_pid, fds[0] if fds else None, spooled(directory, spool_bytes),
                      elapsed_ns / 1e9, Ending(ending))


def consumed(attachment: Attachment) -> None:
    """Tell the keeper its spool is stored (so a later attachment does not get those bytes again)."""
    try:
        attachment.control.send(CONSUMED)
    except OSError:
        pass  # it has ended since: the next look finds its exit record


def ended(directory: Path) -> Ended:
    """How the job whose keeper kept `directory` ended, and what it spooled."""
    spool = spooled(directory)
    try:
        record = directory / EXIT_NAME
        fields = dict(line.split(" ", 1) for line in record.read_text().splitlines())
        status = int(fields["status"])
        ended_by = _ENDED_BY[fields["ended-by"]]
        ended_at = record.stat().st_mtime  # written as the job ended, and never again
    except (OSError, ValueError, KeyError):
        return Ended(None, Ending.NONE, spool)
    if os.WIFEXITED(status):
        return Ended(Exit(0, os.WEXITSTATUS(status), None), ended_by, spool, ended_at)
    return Ended(Exit(0, None, os.WTERMSIG(status)), ended_by, spool, ended_at)


def spooled(directory: Path, size: int | None = None) -> bytes:
    """What the keeper of `directory` spooled (its first `size` bytes, if given)."""
    try:
        with open(directory / SPOOL_NAME, "rb") as spool:
            return spool.read(size)
    except FileNotFoundError:
        return b""


def jobs_left_to_keepers(settings: ServerSettings) -> bool:
    """Whether jobs run on under their keepers with no supervisor, for the next to take back (live restore)."""
    keepers = DataLayout(settings.data_dir).keepers_root
    return settings.live_restore and keepers.is_dir() and any(keepers.iterdir())


def lease_held(fd: int) -> bool:
    """Whether the lease in the file open as `fd` lets jobs run now, as the keepers read it: False once its
    deadline has passed, or if it cannot be read whole."""
    for _ in range(_LEASE_READS):
        data = os.pread(fd, LEASE.size, 0)
        if len(data) == LEASE.size:
            deadline, check = LEASE.unpack(data)
            if check == ~deadline:
                return boot_time_ns() < deadline
    return False
