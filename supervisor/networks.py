"""Network namespaces for jobs, made ahead and kept: with `--network none` each job has a network namespace of
its own, and making one (with its loopback up) costs more than the rest of the sandbox together, the more so
beside running jobs. A thread of the supervisor's makes a few ahead, and the helper joins one (setns) in a
fraction of that time. Once a job has ended, every process of it gone, its namespace may serve a later job of
the same user: never another user's, never two jobs at once. A job, with no capabilities, can change nothing
there (interfaces, routes, filters, sysctls); what it can leave is connections in TIME_WAIT, as it leaves files
in its home. Where none is at hand (a burst of starts), the helper makes one itself.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading
from collections import deque

log = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP_RUNNING = 0x1 | 0x40
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in its union
_libc = ctypes.CDLL(None, use_errno=True)


def _new_namespace() -> int:
    """Move this thread into a new network namespace with its loopback up; a descriptor of it."""
    if _libc.unshare(_CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"making a network namespace: {os.strerror(error)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # made in the thread's new namespace
        _, flags = struct.unpack(_IFREQ, fcntl.ioctl(probe, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP_RUNNING))
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


class NetworkNamespaces:
    """Up to `ready` fresh network namespaces at hand, and of those that ended jobs left, up to `kept_per_user`
    of each user's and `kept` in all (each holds some 150 KiB of the kernel's memory)."""

    def __init__(self, ready: int, kept_per_user: int, kept: int) -> None:
        self.ready = ready
        self.kept_per_user = kept_per_user
        self.kept = kept
        self._kept: dict[str, list[int]] = {}  # by owner; used by the event loop's thread alone
        self._kept_count = 0
        self._made: deque[int] = deque()
        self._wanted = threading.Condition()
        self._closing = False
        # Its own thread, as a thread that makes a namespace lives in it: no other work may run there.
        self._maker = threading.Thread(target=self._make, name="network-namespaces", daemon=True)
        self._maker.start()

    def take(self, owner: str) -> int | None:
        """A descriptor of a namespace for a job of `owner`'s, to hand back (`give_back`) once the job has ended;
        None if none is at hand."""
        kept = self._kept.get(owner)
        if kept:
            self._kept_count -= 1
            return kept.pop()
        with self._wanted:
            fd = self._made.popleft() if self._made else None
            self._wanted.notify()
        return fd

    def give_back(self, owner: str, fd: int) -> None:
        """The namespace of `owner`'s job that has ended, every process of it gone."""
        kept = self._kept.setdefault(owner, [])
        if len(kept) < self.kept_per_user and self._kept_count < self.kept:
            kept.append(fd)
            self._kept_count += 1
        else:
            os.close(fd)

    def _make(self) -> None:
        while True:
            with self._wanted:
                while len(self._made) >= self.ready and not self._closing:
                    self._wanted.wait()
                if self._closing:
                    return
            try:
                fd = _new_namespace()
            except OSError as error:
                log.warning("network namespaces are not made ahead of jobs (%s): each job's helper makes its own",
                            error)
                return
            with self._wanted:
                self._made.append(fd)

    def close(self) -> None:
        with self._wanted:
            self._closing = True
            self._wanted.notify()
        self._maker.join()
        for fd in [*self._made, *(fd for kept in self._kept.values() for fd in kept)]:
            os.close(fd)
        self._made.clear()
        self._kept.clear()
        self._kept_count = 0
