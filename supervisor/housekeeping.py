"""The supervisor's background chores: deleting jobs past their retention, and killing stray processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Collection

from workerctl.store.interface import JobWriter, StoreError
from workerctl.supervisor.containment import Containment, signal_all

log = logging.getLogger(__name__)

_PRUNE_CHECK_SECONDS = 60.0
_PRUNE_BATCH_SECONDS = 1.0  # one prune for a burst of jobs ending together
_STRAY_SWEEP_SECONDS = 5.0


async def prune_forever(store: JobWriter, max_age_days: float, keep_per_user: int,
                        jobs_ended: asyncio.Event) -> None:
    """Delete final jobs past their retention, with their output: soon after jobs end (the count limit), and
    now and then in any case (the age limit)."""
    max_age = max_age_days * 86400
    while True:
        jobs_ended.clear()
        try:
            pruned = store.prune(time.time() - max_age, keep_per_user)
        except StoreError as error:
            log.error("cannot prune old jobs: %s", error)
        else:
            if pruned:
                log.info("pruned %d jobs past their retention", pruned)
        try:
            await asyncio.wait_for(jobs_ended.wait(), min(_PRUNE_CHECK_SECONDS, max_age))
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(_PRUNE_BATCH_SECONDS)


async def sweep_strays_forever(containment: Containment,
                               live: Callable[[], tuple[Collection[str], Collection[int]]]) -> None:
    """Kill processes that escaped every job's scope (only containment by process trees has any), given the
    live jobs and the user IDs they run as."""
    while True:
        await asyncio.sleep(_STRAY_SWEEP_SECONDS)
        strays = containment.strays(*live())
        if strays:
            log.warning("killing %d processes that escaped their jobs: %s", len(strays),
                        [process.pid for process in strays])
            signal_all(strays, signal.SIGKILL)
