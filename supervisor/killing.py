"""Ending a job's processes: SIGTERM to all of them, a grace period, then SIGKILL until nothing is left.

Checks for survivors come quickly at first, then less often, and at once whenever a child of the supervisor
exits (the job's own shell usually is one), so a job that dies on SIGTERM is known gone within a millisecond.
How a signal reaches the processes is the scope's (containment.py); when it is sent is decided here, by the
event loop's clock alone, so that a loop with virtual time runs a grace period in no time at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psutil
from workerctl.supervisor.containment import JobScope
from workerctl.supervisor.exits import ChildExits

log = logging.getLogger(__name__)

_FIRST_CHECK = 0.0005
_LONGEST_CHECK = 0.05
_KILL_CHECK_SECONDS = 1.0


async def terminate(scope: JobScope, grace: float, child_exits: ChildExits) -> None:
    """Return once every process of `scope` is gone: SIGTERM lets them clean up for `grace` seconds, then
    SIGKILL, repeated until the scope is empty (a process may fork while it is being killed)."""
    terminated: set[psutil.Process] = set()

    def terminate_newcomers(processes: list[psutil.Process]) -> None:
        """SIGTERM whatever has joined the job since the last look (a child forked just before its parent
        died, say), so that it too gets the grace period rather than a SIGKILL."""
        newcomers = [process for process in processes if process not in terminated]
        scope.send_sigterm(newcomers, whole_group=not terminated)
        terminated.update(newcomers)

    if await _emptied(scope, 0, child_exits):
        return
    if await _emptied(scope, grace, child_exits, terminate_newcomers):
        return
    rounds = 0
    while True:
        scope.kill_all()
        if await _emptied(scope, _KILL_CHECK_SECONDS, child_exits):
            return
        rounds += 1
        log.warning("processes survive SIGKILL after %d rounds: %s", rounds,
                    [process.pid for process in scope.processes()])


async def _emptied(scope: JobScope, timeout: float, child_exits: ChildExits,
                   on_survivors: Callable[[list[psutil.Process]], None] | None = None) -> bool:
    """Wait up to `timeout` seconds for the scope to have no processes; checks often at first, then less, and
    hands the processes found at each check to `on_survivors`, if given (else only asks whether any are left,
    which costs less)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _FIRST_CHECK
    while True:
        if scope.is_empty():
            if scope.confirm_empty_after is None:
                return True
            # A view pieced together from /proc can miss a process caught between a fork and its parent's
            # exit; one more look a moment later will see it.
            await asyncio.sleep(scope.confirm_empty_after)
            scope.refresh()
            if scope.is_empty():
                return True
        if on_survivors is not None:
            survivors = scope.processes()
            if survivors:
                on_survivors(survivors)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await child_exits.wait(min(delay, remaining))
        delay = min(delay * 2, _LONGEST_CHECK)
