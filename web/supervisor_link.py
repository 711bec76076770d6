"""The front end's end of its link with the supervisor: requests out, replies and change events back.

The link reconnects by itself whenever the supervisor restarts. While it is down after a crash, job requests
wait for it to be back, up to a limit, then are answered "unavailable"; a request in flight when the supervisor
dies is sent again to the next one. When the supervisor says it is shutting down with the server, requests are
answered "shutting down" at once. Change events wake whoever waits on those jobs (long polls and followers).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import TypeVar

from workerctl.protocol.actions import StartRequest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.messages import (
    JobReply,
    JobsChanged,
    MalformedMessage,
    Refusal,
    StartJob,
    StopJob,
    SupervisorClosing,
    SupervisorRequest,
    encode,
)
from workerctl.protocol.replies import JobRef
from workerctl.server.link import read_available, tune_link_socket

log = logging.getLogger(__name__)

T = TypeVar("T")

_RECONNECT_SECONDS = 0.1
_SEND_TIMEOUT_SECONDS = 2.0
_NOT_AVAILABLE = "the job supervisor is not available right now; try again in a moment"
_SHUTTING_DOWN = "the server is shutting down; try again once it is back"
_SENDS = 3  # a request the supervisor dies on three times over is not sent a fourth
_RESEND_KEY_PREFIX = "workerctl-resend:"


class _LinkBroken(Exception):
    """The link broke before the supervisor answered a request."""


class JobWatchers:
    """Futures that resolve when a job changes. Take one before reading the job, so that no change between
    the read and the wait is missed."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    @contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Future[None]]:
        """A future that resolves when the job next changes, for as long as the block runs."""
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


async def changed_within(future: asyncio.Future[None], timeout: float) -> None:
    """Wait for a `watching` future, at most `timeout` seconds."""
    try:
        await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        pass


class SupervisorLink:
    def __init__(self, address: Path, authkey: bytes, watchers: JobWatchers, unavailable_wait: float) -> None:
        self.address = address
        self.authkey = authkey
        self.watchers = watchers
        self.unavailable_wait = unavailable_wait
        self.up = asyncio.Event()  # set while connected
        self._connection: Connection | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._closing = asyncio.Event()  # the supervisor is shutting down with the server
        self._pending: dict[int, asyncio.Future[JobRef]] = {}
        self._ids = itertools.count(1)

    async def ready(self) -> None:
        """Return once the supervisor is first connected."""
        await self.up.wait()

    async def read(self, call: Callable[[], T]) -> T:
        """A read of the store: here, at once (SQLite on the host's own disk answers in microseconds)."""
        return call()

    async def ensure_up(self) -> None:
        """Return once the supervisor is connected: at once in normal operation; while it restarts after a
        crash, as soon as it is back, up to `unavailable_wait` seconds; then UNAVAILABLE. At shutdown,
        UNAVAILABLE at once."""
        if self._connection is None and not self._closing.is_set():
            waits = [asyncio.ensure_future(self.up.wait()), asyncio.ensure_future(self._closing.wait())]
            _, pending = await asyncio.wait(waits, timeout=self.unavailable_wait, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()
        if self._closing.is_set() and self._connection is None:
            raise ApiError(ErrorKind.UNAVAILABLE, _SHUTTING_DOWN)
        if self._connection is None:
            raise ApiError(ErrorKind.UNAVAILABLE, _NOT_AVAILABLE)

    async def start(self, user: str, request: StartRequest, timeout: float) -> JobRef:
        if request.host is not None:
            raise ApiError(ErrorKind.BAD_REQUEST, "host names a host of a cluster; this server is one host")
        # Every start carries a key, so that one sent again after the link broke cannot start a second job.
        key = request.idempotency_key or f"{_RESEND_KEY_PREFIX}{secrets.token_urlsafe(16)}"
        return await self._request(lambda request_id: StartJob(
            request_id, user, request.command, key, request.limits, request.env, request.labels), timeout)

    async def stop(self, user: str, job_id: str, timeout: float) -> JobRef:
        return await self._request(lambda request_id: StopJob(request_id, user, job_id), timeout)

    async def _request(self, make: Callable[[int], SupervisorRequest], timeout: float) -> JobRef:
        """Send a request and return the job the supervisor answers with; ApiError for its refusals. If the link
        breaks before the answer, the request is sent again to the next supervisor: a kill -9 is not seen at
        once, and a request can reach a supervisor that is already dying. Starts and stops are safe to repeat."""
        for _ in range(_SENDS):
            await self.ensure_up()
            assert self._connection is not None
            request_id = next(self._ids)
            answer = asyncio.get_running_loop().create_future()
            self._pending[request_id] = answer
            try:
                self._connection.send_bytes(encode(make(request_id)))
                return await asyncio.wait_for(answer, timeout)
            except OSError:
                self._pending.pop(request_id, None)  # so the disconnect has no answer of ours to fail
                self._disconnect("cannot send to the supervisor")
            except _LinkBroken:
                pass
            except asyncio.TimeoutError:
                raise ApiError(ErrorKind.UNAVAILABLE, "the job supervisor did not answer in time; check with "
                                                      "status or list whether the request took effect") from None
            finally:
                self._pending.pop(request_id, None)
        raise ApiError(ErrorKind.UNAVAILABLE, "the job supervisor stopped while handling the request; check with "
                                              "status or list whether it took effect")

    async def maintain(self) -> None:
        """Keep the link connected for as long as the front end runs."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection = await loop.run_in_executor(None, self._connect)
            except (OSError, EOFError) as error:  # not listening yet, or gone mid-handshake
                log.debug("supervisor not reachable: %s", error)
                await asyncio.sleep(_RECONNECT_SECONDS)
                continue
            self._connection = connection
            self._lost.clear()
            loop.add_reader(connection.fileno(), self._readable)
            self.up.set()
            log.info("connected to the supervisor")
            self.watchers.notify_all()
            await self._lost.wait()

    def _connect(self) -> Connection:
        connection = Client(str(self.address), family="AF_UNIX", authkey=self.authkey)
        tune_link_socket(connection, _SEND_TIMEOUT_SECONDS)
        return connection

    def _readable(self) -> None:
        assert self._connection is not None
        try:
            messages = read_available(self._connection)
        except (EOFError, OSError, MalformedMessage) as error:
            self._disconnect(f"lost the supervisor ({str(error) or type(error).__name__})")
            return
        for message in messages:
            match message:
                case JobsChanged():
                    self.watchers.notify(message.job_ids)
                case SupervisorClosing():
                    self._closing.set()
                case JobReply() | Refusal():
                    self._settle(message)
                case _:
                    log.error("ignored a message the supervisor should not send: %r", message)

    def _settle(self, reply: JobReply | Refusal) -> None:
        answer = self._pending.get(reply.request_id)
        if answer is None or answer.done():
            return  # its requester gave up waiting
        if isinstance(reply, Refusal):
            answer.set_exception(reply.error())
        else:
            answer.set_result(JobRef(reply.job_id, reply.status))

    def _disconnect(self, why: str) -> None:
        if self._connection is None:
            return
        asyncio.get_running_loop().remove_reader(self._connection.fileno())
        self._connection.close()
        self._connection = None
        self.up.clear()
        if self._closing.is_set():
            log.info("the supervisor stopped: the server is shutting down")
        else:
            log.warning("%s; requests wait for it to be back", why)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(_LinkBroken())
        self._pending.clear()
        self.watchers.notify_all()
        self._lost.set()
