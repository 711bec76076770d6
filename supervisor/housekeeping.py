"""The supervisor's background chores: deleting jobs past their retention, and killing stray processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from workerctl.supervisor.containment import Containment, signal_all
from workerctl.store.layout import TreeRemover
from workerctl.store.records import RecordWriter

log = logging.getLogger(__name__)

_PRUNE_CHECK_SECONDS = 60.0
_PRUNE_BATCH_SECONDS = 1.0  # one prune for a burst of jobs ending together
_STRAY_SWEEP_SECONDS = 5.0


async def prune_forever(records: RecordWriter, output_root: Path, max_age_days: float, keep_per_user: int,
                        jobs_ended: asyncio.Event, remover: TreeRemover) -> None:
    """Delete final jobs past their retention, with their output: soon after jobs end (the count limit), and
    now and then in any case (the age limit)."""
    max_age = max_age_days * 86400
    while True:
        jobs_ended.clear()
        _prune(records, output_root, time.time() - max_age, keep_per_user, remover)
        try:
            await asyncio.wait_for(jobs_ended.wait(), min(_PRUNE_CHECK_SECONDS, max_age))
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(_PRUNE_BATCH_SECONDS)


def _prune(records: RecordWriter, output_root: Path, cutoff: float, keep_per_user: int,
           remover: TreeRemover) -> None:
    try:
        expired = records.expired(cutoff, keep_per_user)
        if expired:
            records.delete(expired)
            records.commit()
    except sqlite3.Error as error:
        records.rollback()
        log.error("cannot prune old jobs: %s", error)
        return
    for job_id in expired:
        remover.remove(output_root / job_id)
    if expired:
        log.info("pruned %d jobs past their retention", len(expired))


async def sweep_strays_forever(containment: Containment, live_jobs: Callable[[], Mapping[str, int | None]]) -> None:
    """Kill processes that escaped every job's scope (only containment by process trees has any)."""
    while True:
        await asyncio.sleep(_STRAY_SWEEP_SECONDS)
        strays = containment.strays(live_jobs())
        if strays:
            log.warning("killing %d processes that escaped their jobs: %s", len(strays),
                        [process.pid for process in strays])
            signal_all(strays, signal.SIGKILL)
