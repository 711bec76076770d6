"""What the API needs of its way to the jobs, `JobLink`, whichever it is: a single host's link to its supervisor
(supervisor_link.py) or a cluster's Celery and Redis (workerctl.cluster, handed in by its launcher). Beside it,
the watchers that wake long polls and followers when a job changes, and what a supervisor's reply means here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from workerctl.protocol.actions import StartRequest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.messages import Refusal, Reply, StartJob
from workerctl.protocol.replies import JobRef

T = TypeVar("T")

_RESEND_KEY_PREFIX = "workerctl-resend:"


class JobWatchers:
    """Futures that resolve when a job changes. Take one before reading the job, so that no change between
    the read and the wait is missed."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._closed = False

    @contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Future[None]]:
        """A future that resolves when the job next changes, for as long as the block runs; UNAVAILABLE once
        the front end is stopping."""
        if self._closed:
            raise ApiError(ErrorKind.UNAVAILABLE, "the server is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        try:
            yield future
        finally:
            futures = self._waiting.get(job_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiting[job_id]

    def notify(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for future in self._waiting.pop(job_id, ()):
                if not future.done():
                    future.set_result(None)

    def notify_all(self) -> None:
        self.notify(list(self._waiting))

    def close(self) -> None:
        """The front end is stopping: every wait ends now, and the next is refused as UNAVAILABLE (503, which
        clients ask again after: a follower goes on with the next server) rather than cut off."""
        self._closed = True
        self.notify_all()


async def changed_within(future: asyncio.Future[None], timeout: float) -> None:
    """Wait for a `watching` future, at most `timeout` seconds."""
    try:
        await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        pass


class JobLink(Protocol):
    """Starts and stops out, change events in, and the rules for reading the store. Every method that cannot
    do its part now raises ApiError (UNAVAILABLE while the jobs' owner cannot be reached)."""

    watchers: JobWatchers
    up: asyncio.Event
    """Set while the jobs' owner can be reached: a record of a job that has not ended is current only then."""

    async def ready(self) -> None:
        """Return once requests can be answered (until then clients wait in the listening socket's backlog)."""

    async def ensure_up(self) -> None:
        """Return once `up`, if it comes within the link's own wait; else ApiError."""

    async def read(self, call: Callable[[], T]) -> T:
        """The result of `call`, a read of the store, made as the store needs (off the event loop, say)."""

    async def start(self, user: str, request: StartRequest, timeout: float) -> JobRef:
        """Start a job for `user`; the job as its supervisor recorded it, or ApiError for its refusal."""

    async def stop(self, user: str, job_id: str, timeout: float) -> JobRef:
        """Stop `user`'s job; the job once it has ended, or ApiError."""

    async def maintain(self) -> None:
        """Keep the link working (connected, checked, events followed) for as long as the front end runs."""

    async def unready(self) -> str | None:
        """Why a start would not be taken now, in one sentence; None if it would (GET /readyz)."""


def job_ref(reply: Reply) -> JobRef:
    """The job a supervisor's reply names; its refusal as an ApiError."""
    if isinstance(reply, Refusal):
        raise reply.error()
    return JobRef(reply.job_id, reply.status)


def start_job(user: str, request: StartRequest) -> StartJob:
    """The supervisor's request for a start. Every start carries an idempotency key, the client's or one made up
    here, so that one sent again (after the link broke, say) cannot start a second job."""
    key = request.idempotency_key or f"{_RESEND_KEY_PREFIX}{secrets.token_urlsafe(16)}"
    return StartJob(0, user, request.command, key, request.limits, request.env, request.labels)
