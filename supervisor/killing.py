"""Ending a job's processes: SIGTERM to all of them, a grace period, then SIGKILL until nothing is left.

Checks for survivors come quickly at first, then less often, and at once whenever a child of the supervisor
exits (the job's own shell usually is one), so a job that dies on SIGTERM is known gone within a millisecond.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

import psutil
from workerctl.supervisor.containment import JobScope, signal_all
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
        group = scope.process_group() if not terminated else None
        if group is not None:
            # The job's own process group all at once: signalled one by one, a child could die first and its
            # parent (a shell) wake and carry on, past its `wait` or printing "Terminated", before its own
            # SIGTERM arrived. The sandbox helper and its init hold the signal rather than drop it, so a
            # command that init is starting at this moment gets it too (see sandbox_helper.c). Who left the
            # group (setsid), or was forked by a parent holding the signal blocked, is signalled on its own.
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                group = None
        outside = [process for process in newcomers if group is None or _group_of(process) != group]
        signal_all(parents_first(outside), signal.SIGTERM)
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


def parents_first(processes: list[psutil.Process]) -> list[psutil.Process]:
    """`processes` with each one after its parent, where both are listed, so a parent signalled one by one gets
    its signal before its child can die of one. Their pids are no guide: pids wrap around (at 32,768 by default),
    and a child can have a smaller pid than its parent."""
    parent_of = {process.pid: _parent_of(process) for process in processes}

    def depth(pid: int) -> int:
        steps = 0
        while (pid := parent_of.get(pid, 0)) in parent_of and steps < len(parent_of):
            steps += 1
        return steps
    return sorted(processes, key=lambda process: depth(process.pid))


def _parent_of(process: psutil.Process) -> int:
    try:
        return process.ppid()
    except psutil.Error:
        return 0


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


async def _emptied(scope: JobScope, timeout: float, child_exits: ChildExits,
                   on_survivors: Callable[[list[psutil.Process]], None] | None = None) -> bool:
    """Wait up to `timeout` seconds for the scope to have no processes; checks often at first, then less, and
    hands the processes found at each check to `on_survivors`, if given (else only asks whether any are left,
    which costs less)."""
    deadline = time.monotonic() + timeout
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
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await child_exits.wait(min(delay, remaining))
        delay = min(delay * 2, _LONGEST_CHECK)
