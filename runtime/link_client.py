"""The client end of a supervisor's link, whoever waits on it: the front end on its event loop
(web/supervisor_link.py) and an agent's relay in threads (cluster/relay.py). It owns what both need: connecting,
request IDs, the requests still waiting for their reply, and the one table that routes what the supervisor sends.

A requester hands `send` where its reply goes; how it waits, and whether it sends again after the link broke
(up to SENDS times: starts carry an idempotency key and stops are safe to repeat), are its own.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from pathlib import Path

import msgspec
from workerctl.protocol.messages import FenceJobs, JobReply, JobsChanged, Refusal, Reply, SupervisorClosing, encode
from workerctl.runtime.link import LinkRequest, dispatch, read_available, tune_link_socket

Deliver = Callable[[Reply | None], None]
"""Where a request's reply goes: the reply, or None if the link broke before it came."""

SENDS = 3  # a request the supervisor dies on three times over is not sent a fourth
RECONNECT_SECONDS = 0.1
_SEND_TIMEOUT_SECONDS = 2.0


class LinkClient:
    """One connection at a time to the supervisor at `address`; `on_changed` hears of the jobs it changed and
    `on_closing` that it is shutting down with the server."""

    def __init__(self, address: Path, authkey: bytes, on_changed: Callable[[tuple[str, ...]], None],
                 on_closing: Callable[[], None]) -> None:
        self.address = address
        self.authkey = authkey
        self.connection: Connection | None = None
        self._pending: dict[int, Deliver] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the relay's threads send at once
        self._on_changed = on_changed
        self._on_closing = on_closing
        self._handlers = {JobsChanged: self._changed, SupervisorClosing: self._closing,
                          JobReply: self._deliver, Refusal: self._deliver}

    def connect(self) -> Connection:
        """A new connection to the supervisor, for `attach`; blocks for the handshake. OSError or EOFError while
        the supervisor is not listening, or gone mid-handshake."""
        connection = Client(str(self.address), family="AF_UNIX", authkey=self.authkey)
        tune_link_socket(connection, _SEND_TIMEOUT_SECONDS)
        return connection

    def attach(self, connection: Connection) -> None:
        with self._lock:
            self.connection = connection

    def send(self, request: LinkRequest, deliver: Deliver) -> int:
        """Send `request` under a new request ID, its reply to go to `deliver`; that ID, for `forget`. OSError if
        it cannot be sent (not connected, or the send failed or timed out): then nothing waits for a reply."""
        with self._lock:
            if self.connection is None:
                raise ConnectionError("not connected to the supervisor")
            request_id = next(self._ids)
            self._pending[request_id] = deliver
            try:
                self.connection.send_bytes(encode(msgspec.structs.replace(request, request_id=request_id)))
            except OSError:
                del self._pending[request_id]
                raise
        return request_id

    def notify(self, message: FenceJobs) -> None:
        """Send a message that is not answered, if connected (else it is dropped); OSError if the send fails."""
        with self._lock:
            if self.connection is not None:
                self.connection.send_bytes(encode(message))

    def forget(self, request_id: int) -> None:
        """Its requester stopped waiting: a reply that comes now is dropped."""
        self._pending.pop(request_id, None)

    def receive(self) -> None:
        """Route every message waiting on the connection; EOFError, OSError or MalformedMessage once it is lost."""
        assert self.connection is not None
        dispatch(self._handlers, read_available(self.connection))

    def detach(self) -> None:
        """Close the connection, lost or no longer wanted, and tell every request still waiting (None)."""
        with self._lock:
            connection, self.connection = self.connection, None
            waiting = list(self._pending.values())
            self._pending.clear()
        if connection is not None:
            connection.close()
        for deliver in waiting:
            deliver(None)

    def _changed(self, events: list[JobsChanged]) -> None:
        for event in events:
            self._on_changed(event.job_ids)

    def _closing(self, _: list[SupervisorClosing]) -> None:
        self._on_closing()

    def _deliver(self, replies: list[Reply]) -> None:
        for reply in replies:
            deliver = self._pending.pop(reply.request_id, None)
            if deliver is not None:  # else its requester gave up waiting
                deliver(reply)
