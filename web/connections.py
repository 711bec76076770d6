"""The server's connections: at most so many in all and per client address, TLS handshakes that must finish in
time, and Tornado's own refusals answered in JSON like every other answer.

Tornado answers a request it cannot parse with a bare `400 Bad Request` and closes a connection whose headers
are too large without any answer. The stream class below turns the first into a JSON 400 and answers the second
with a JSON 431 before the connection closes; everything the handler refuses is JSON already.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import tornado.httpserver
import tornado.iostream
from tornado.ioloop import IOLoop

log = logging.getLogger(__name__)

_WARNING_INTERVAL_SECONDS = 10.0
_TORNADOS_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"


def http_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer whose body is `{"error": message}`, closing the connection."""
    body = json.dumps({"error": message}).encode() + b"\n"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class JsonRefusingStream(tornado.iostream.SSLIOStream):
    """A server-side TLS stream whose refusals from Tornado itself are JSON."""

    def write(self, data: bytes | memoryview) -> Awaitable[None]:  # type: ignore[override]
        if data == _TORNADOS_400:
            data = http_answer(400, "Bad Request", "the request is not valid HTTP/1.1")
        return super().write(data)

    def _check_max_bytes(self, delimiter: Any, size: int) -> None:
        try:
            super()._check_max_bytes(delimiter, size)
        except tornado.iostream.UnsatisfiableReadError:
            if self._read_regex is not None:  # the headers' end, not found within the limit
                answer = http_answer(431, "Request Header Fields Too Large",
                                     f"the request's headers are larger than the limit of {self._read_max_bytes} "
                                     "bytes")
            else:  # a chunk's size line
                answer = http_answer(400, "Bad Request", "the request is not valid HTTP/1.1")
            # The stream closes as soon as this returns, dropping anything queued: send the answer now, and keep
            # the connection half open for a moment to read what the client is still sending, or closing with
            # unread data would reset the connection and the client would lose the answer.
            try:
                self.socket.send(answer)
                _linger(self.socket)
            except (ssl.SSLError, OSError):
                pass
            raise


_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024


def _linger(sock: socket.socket) -> None:
    """Stop sending on a copy of `sock` and read what still comes, for a moment, before closing it."""
    copy = socket.socket(fileno=os.dup(sock.fileno()))
    copy.setblocking(False)
    copy.shutdown(socket.SHUT_WR)
    loop = IOLoop.current()
    left = [_LINGER_BYTES]

    def finish() -> None:
        if copy.fileno() != -1:
            loop.remove_handler(copy)
            copy.close()

    def drain(_fd: int, _events: int) -> None:
        try:
            data = copy.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        left[0] -= len(data)
        if not data or left[0] <= 0:
            finish()

    loop.add_handler(copy, drain, IOLoop.READ)
    loop.call_later(_LINGER_SECONDS, finish)


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that refuses connections past `max_connections` in all or `max_per_client` from one
    address, so that a flood of idle connections can neither use up the process's descriptors nor lock others
    out, and closes connections whose TLS handshake has not finished after `handshake_seconds`."""

    max_connections = 10_000
    max_per_client = 64
    handshake_seconds = 10.0
    _last_warning = 0.0

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._per_client: Counter[str] = Counter()

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        client = str(address[0]) if address else "-"
        if len(self._connections) >= self.max_connections or self._per_client[client] >= self.max_per_client:
            stream.close()
            self._warn(f"refusing connections: {len(self._connections)} are open, {self._per_client[client]} "
                       f"from {client}")
            return
        assert isinstance(stream, tornado.iostream.SSLIOStream), "the server speaks TLS only"
        stream.__class__ = JsonRefusingStream
        self._per_client[client] += 1
        stream.workerctl_client = client  # type: ignore[attr-defined]
        deadline = IOLoop.current().call_later(self.handshake_seconds, self._handshake_overdue, stream)

        def handshake_over(done: Any) -> None:
            IOLoop.current().remove_timeout(deadline)
            if not done.cancelled():
                done.exception()  # a handshake that failed is the connection's end, not an error to report
        stream.wait_for_handshake().add_done_callback(handshake_over)
        super().handle_stream(stream, address)

    @staticmethod
    def _handshake_overdue(stream: tornado.iostream.IOStream) -> None:
        if not stream.closed():
            stream.close()

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        client = getattr(getattr(server_conn, "stream", None), "workerctl_client", None)
        if client is not None:
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > _WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning("%s", message)
