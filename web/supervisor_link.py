"""The front end's end of its link with the supervisor: requests out, replies and change events back.

The link reconnects by itself whenever the supervisor restarts. While it is down after a crash, job requests
wait for it to be back, up to a limit, then are answered "unavailable"; a request in flight when the supervisor
dies is sent again to the next one. When the supervisor says it is shutting down with the server, requests are
answered "shutting down" at once. Change events wake whoever waits on those jobs (long polls and followers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from workerctl.protocol.actions import StartRequest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.messages import MalformedMessage, Reply, StopJob
from workerctl.protocol.replies import JobRef
from workerctl.runtime.link import LinkRequest
from workerctl.runtime.link_client import RECONNECT_SECONDS, SENDS, Deliver, LinkClient
from workerctl.web.job_link import JobWatchers, job_ref, start_job

log = logging.getLogger(__name__)

T = TypeVar("T")

_NOT_AVAILABLE = "the job supervisor is not available right now; try again in a moment"
_SHUTTING_DOWN = "the server is shutting down; try again once it is back"


class SupervisorLink:
    """A single host's JobLink: the front end's client of its supervisor's link, on the event loop."""

    def __init__(self, address: Path, authkey: bytes, unavailable_wait: float) -> None:
        self.watchers = JobWatchers()
        self.unavailable_wait = unavailable_wait
        self.up = asyncio.Event()  # set while connected
        self._lost: asyncio.Event = asyncio.Event()
        self._closing = asyncio.Event()  # the supervisor is shutting down with the server
        self._client = LinkClient(address, authkey, self.watchers.notify, self._closing.set)

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
        if self._client.connection is None and not self._closing.is_set():
            waits = [asyncio.ensure_future(self.up.wait()), asyncio.ensure_future(self._closing.wait())]
            _, pending = await asyncio.wait(waits, timeout=self.unavailable_wait, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()
        if self._closing.is_set() and self._client.connection is None:
            raise ApiError(ErrorKind.UNAVAILABLE, _SHUTTING_DOWN)
        if self._client.connection is None:
            raise ApiError(ErrorKind.UNAVAILABLE, _NOT_AVAILABLE)

    async def start(self, user: str, request: StartRequest, timeout: float) -> JobRef:
        if request.host is not None:
            raise ApiError(ErrorKind.BAD_REQUEST, "host names a host of a cluster; this server is one host")
        return await self._request(start_job(user, request), timeout)

    async def stop(self, user: str, job_id: str, timeout: float) -> JobRef:
        return await self._request(StopJob(0, user, job_id), timeout)

    async def _request(self, request: LinkRequest, timeout: float) -> JobRef:
        """Send a request and return the job the supervisor answers with; ApiError for its refusals. If the link
        breaks before the answer, the request is sent again to the next supervisor: a kill -9 is not seen at
        once, and a request can reach a supervisor that is already dying."""
        for _ in range(SENDS):
            await self.ensure_up()
            answer: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
            try:
                request_id = self._client.send(request, _into(answer))
            except OSError:
                self._disconnect("cannot send to the supervisor")
                continue
            try:
                reply = await asyncio.wait_for(answer, timeout)
            except asyncio.TimeoutError:
                raise ApiError(ErrorKind.UNAVAILABLE, "the job supervisor did not answer in time; check with "
                                                      "status or list whether the request took effect") from None
            finally:
                self._client.forget(request_id)
            if reply is not None:
                return job_ref(reply)
        raise ApiError(ErrorKind.UNAVAILABLE, "the job supervisor stopped while handling the request; check with "
                                              "status or list whether it took effect")

    async def unready(self) -> str | None:
        if self._closing.is_set():
            return _SHUTTING_DOWN
        if self._client.connection is None:
            return "the job supervisor is not connected: it is starting or restarting"
        return None

    async def maintain(self) -> None:
        """Keep the link connected for as long as the front end runs."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection = await loop.run_in_executor(None, self._client.connect)
            except (OSError, EOFError) as error:  # not listening yet, or gone mid-handshake
                log.debug("supervisor not reachable: %s", error)
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            self._client.attach(connection)
            self._lost.clear()
            loop.add_reader(connection.fileno(), self._readable)
            self.up.set()
            log.info("connected to the supervisor")
            self.watchers.notify_all()
            await self._lost.wait()

    def _readable(self) -> None:
        try:
            self._client.receive()
        except (EOFError, OSError, MalformedMessage) as error:
            self._disconnect(f"lost the supervisor ({str(error) or type(error).__name__})")

    def _disconnect(self, why: str) -> None:
        connection = self._client.connection
        if connection is None:
            return
        asyncio.get_running_loop().remove_reader(connection.fileno())
        self.up.clear()
        if self._closing.is_set():
            log.info("the supervisor stopped: the server is shutting down")
        else:
            log.warning("%s; requests wait for it to be back", why)
        self._client.detach()  # every request waiting for a reply is sent again
        self.watchers.notify_all()
        self._lost.set()


def _into(answer: asyncio.Future[Reply | None]) -> Deliver:
    """Where a reply goes: into `answer`, unless its requester stopped waiting."""
    def deliver(reply: Reply | None) -> None:
        if not answer.done():
            answer.set_result(reply)
    return deliver
