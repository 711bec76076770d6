"""What an earlier run of the supervisor left unfinished: its jobs' records, settled as `error` before this run
answers anything, and their processes and cgroups, ended meanwhile in the background."""

from __future__ import annotations

import logging
from collections.abc import Collection

from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import JobWriter
from workerctl.supervisor.exits import ChildExits
from workerctl.supervisor.host import JobHost
from workerctl.supervisor.killing import terminate

log = logging.getLogger(__name__)


def settle_unfinished(store: JobWriter, reason: str) -> set[str]:
    """Mark every job an earlier run left unfinished as `error`, for `reason`; their IDs."""
    unsettled = store.unsettled()
    for record in unsettled:
        record.move_to(JobStatus.ERROR, reason=reason)
        store.save(record)
    store.commit()
    if unsettled:
        log.warning("settled %d jobs an earlier run left unfinished: %s", len(unsettled), reason)
    return {record.id for record in unsettled}


async def end_leftovers(host: JobHost, job_ids: Collection[str], grace: float, child_exits: ChildExits) -> None:
    """End whatever processes of these jobs an earlier run left behind, as any job's are ended (SIGTERM, `grace`
    seconds, SIGKILL), and remove their cgroups."""
    leftovers = host.leftovers(job_ids)
    survivors = leftovers.processes()
    if survivors:
        log.warning("ending %d processes an earlier run left behind", len(survivors))
        await terminate(leftovers, grace, child_exits)
    leftovers.release()
    host.release_leftovers(job_ids)
