"""Learning that child processes have exited, and reaping them: the one place that waits for children.

A job's main process is watched through a pidfd, which becomes readable when it exits. SIGCHLD is not used:
a thousand children dying together would overflow the event loop's signal pipe, and CPython's report of that
from inside the signal handler can deadlock the process (python/cpython#74236).

The supervisor and the serve process are both child subreapers, so orphans re-parent to them and must be
reaped too; `reap_exited` does it for both. The serve process leaves its own children (the front end and the
supervisor) for multiprocessing to wait for: a blanket wait would steal their exit statuses.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Container
from dataclasses import dataclass


@dataclass(frozen=True)
class Exit:
    """How a child ended: its exit code, or the signal that killed it."""

    pid: int
    code: int | None
    signal: int | None


def reap_exited(keep: Container[int] = ()) -> list[Exit]:
    """Reap every child that has exited, except those in `keep` (and, as a wait returns the first exited
    child, any that exited after one of those)."""
    peek = os.WNOWAIT if keep else 0
    exits = []
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | peek)
        except ChildProcessError:
            break
        if exited is None or exited.si_pid in keep:
            break
        if peek:
            os.waitid(os.P_PID, exited.si_pid, os.WEXITED)
        if exited.si_code == os.CLD_EXITED:
            exits.append(Exit(exited.si_pid, exited.si_status, None))
        else:
            exits.append(Exit(exited.si_pid, None, exited.si_status))
    return exits


@functools.cache
def pidfds_work() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def watch_exit(pid: int, on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call `on_exit` once the process `pid` (a child, not yet reaped) exits; returns what stops watching."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    loop.add_reader(pidfd, on_exit)

    def stop() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return stop


class ChildExits:
    """Wakes whoever waits as soon as any child of this process exits (call `notify` when one does)."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def wait(self, timeout: float) -> None:
        """Wait for the next child exit, at most `timeout` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiting.discard(waiter)
