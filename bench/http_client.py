"""A lean HTTP/1.1 client for load: POST a prepared body, read a Content-Length answer, keep the connection.

http.client parses every answer's headers into an email.message object; with several client processes sharing
two cores with the server, that cost would be measured as the server's. This client does the least a client
can: one `sendall` per request and a scan for Content-Length, over TLS or plain TCP.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

_RECEIVE_BYTES = 256 * 1024


class HttpError(Exception):
    """The server answered with a status other than 200, or broke the connection."""


class HttpConnection:
    """POSTs to one path of a loopback server. With `keep_alive=False` every request opens (and, over TLS,
    handshakes) a connection of its own, as a client that keeps nothing between calls would."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, path: str = "/",
                 headers: dict[str, str] | None = None, keep_alive: bool = True, timeout: float = 60.0) -> None:
        self.port = port
        self.tls = tls
        self.keep_alive = keep_alive
        self.timeout = timeout
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        connection = "keep-alive" if keep_alive else "close"
        self._head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n{extra}"
        self._socket: socket.socket | None = None
        self._buffer = b""

    def post(self, body: bytes) -> bytes:
        """Send `body`; the answer's body, or HttpError."""
        if self._socket is None:
            self._socket = self._connect()
        request = f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        try:
            self._socket.sendall(request)
            status, answer = self._read_answer()
        except OSError as error:
            self.close()
            raise HttpError(f"connection to port {self.port} failed: {error}") from None
        if not self.keep_alive:
            self.close()
        if status != 200:
            raise HttpError(f"HTTP {status}: {answer[:300]!r}")
        return answer

    def post_json(self, fields: dict[str, Any]) -> dict[str, Any]:
        answer = json.loads(self.post(json.dumps(fields).encode()))
        assert isinstance(answer, dict)
        return answer

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self._buffer = b""

    def _connect(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return raw
        return self.tls.wrap_socket(raw, server_hostname="127.0.0.1")

    def _receive(self) -> bytes:
        assert self._socket is not None
        data = self._socket.recv(_RECEIVE_BYTES)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        return data

    def _read_answer(self) -> tuple[int, bytes]:
        buffer = self._buffer
        while (head_end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._receive()
        head = buffer[:head_end].lower()
        status = int(head[9:12])
        length_at = head.find(b"\r\ncontent-length:")
        if length_at < 0:
            raise HttpError("the answer has no Content-Length")
        line_end = head.find(b"\r\n", length_at + 2)
        length = int(head[length_at + 17:line_end if line_end >= 0 else len(head)])
        body = buffer[head_end + 4:]
        while len(body) < length:
            body += self._receive()
        self._buffer = body[length:]
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body[:length]
