"""Publishing what happens to jobs: their records, committed to the store once per turn of the event loop,
and the change events that wake the front end's long polls and log followers.

A commit that fails (a full disk, a shared store that cannot be reached) keeps its records and is tried again
every second, as is one the store needs to send output it held back; nothing is dropped meanwhile, and the jobs
run on. A change is committed before its event is sent, so the front end never re-reads a record older than the
event it was woken by; the event goes out right after the commit. Events for new output alone are coalesced to
at most one every few milliseconds: a job writing as fast as it can causes a steady trickle, not a flood.
"""

from __future__ import annotations

import asyncio
import logging

from workerctl.protocol.messages import JobsChanged
from workerctl.store.interface import JobRecord, JobWriter, StoreError
from workerctl.supervisor.link import LinkListener

log = logging.getLogger(__name__)

_EVENT_INTERVAL = 0.005
_RETRY_SECONDS = 1.0


class Publisher:
    def __init__(self, store: JobWriter, link: LinkListener) -> None:
        self.store = store
        self.link = link
        self._unsaved: dict[str, JobRecord] = {}
        self._changed: set[str] = set()
        self._commit_handle: asyncio.Handle | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._failing = False  # whether the last commit failed (logged once until one succeeds)
        self._events_handle: asyncio.Handle | None = None
        self._last_events = 0.0

    def save(self, record: JobRecord) -> None:
        """Record a job's new state at the end of this turn of the loop, with whatever else changed in it."""
        self._unsaved[record.id] = record
        self._changed.add(record.id)
        if self._commit_handle is None:
            self._commit_handle = asyncio.get_running_loop().call_soon(self._commit)

    def saving(self, job_id: str) -> bool:
        """Whether a change of the job is waiting to be committed."""
        return job_id in self._unsaved

    def output_grew(self, job_id: str) -> None:
        self._changed.add(job_id)
        self._schedule_events()
        if self._commit_handle is None and self.store.holding_back():  # the commit sends it, when it can
            self._commit_handle = asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._commit)

    async def saved(self) -> None:
        """Return once every change saved so far is committed."""
        if self._unsaved:
            committed = asyncio.get_running_loop().create_future()
            self._commit_waiters.append(committed)
            await committed

    def _commit(self) -> None:
        self._commit_handle = None
        try:
            for record in self._unsaved.values():
                self.store.save(record)
            self.store.commit()
        except StoreError as error:
            self.store.rollback()
            if self.store.free_reserve():
                log.error("the store is full: released the space reserved for the records")
                retry_in = 0.0
            else:
                if not self._failing:
                    log.error("cannot save %d job records, holding them until it can be done (retrying every "
                              "second): %s", len(self._unsaved), error)
                self._failing = True
                retry_in = _RETRY_SECONDS
            self._commit_handle = asyncio.get_running_loop().call_later(retry_in, self._commit)
            return
        if self._failing:
            log.warning("saved the job records held back")
            self._failing = False
        self._unsaved.clear()
        for committed in self._commit_waiters:
            if not committed.done():
                committed.set_result(None)
        self._commit_waiters.clear()
        self.send_events()

    def _schedule_events(self) -> None:
        if self._events_handle is None:
            loop = asyncio.get_running_loop()
            self._events_handle = loop.call_at(max(loop.time(), self._last_events + _EVENT_INTERVAL),
                                               self.send_events)

    def send_events(self) -> None:
        """Tell the front end which jobs changed (status or output) since the last time. A job whose new
        state is not committed yet waits for the commit: woken before it, the front end would read the old
        state, and the commit would find nothing left to announce."""
        if self._events_handle is not None:
            self._events_handle.cancel()
            self._events_handle = None
        self._last_events = asyncio.get_running_loop().time()
        ready = self._changed - self._unsaved.keys()
        if ready:
            self.link.broadcast(JobsChanged(tuple(sorted(ready))))
            self._changed -= ready
