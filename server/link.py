"""The link between the server's two processes: a `multiprocessing.connection` on a Unix socket, carrying one
JSON message per frame (see `workerctl.protocol.messages`). These helpers set up and read it the same way at
both ends."""

from __future__ import annotations

import socket
import struct
from multiprocessing.connection import Connection

from workerctl.protocol.messages import Message, decode

_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def tune_link_socket(connection: Connection, send_timeout: float) -> None:
    """Give a link connection large buffers and a send timeout: a peer that stops reading makes a send fail
    rather than block the sender's event loop."""
    sock = socket.fromfd(connection.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)  # a duplicate; same socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER_BYTES)
        seconds = int(send_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", seconds, int((send_timeout - seconds) * 1_000_000)))
    finally:
        sock.close()


def read_available(connection: Connection) -> list[Message]:
    """Every complete message waiting on the connection; EOFError once the peer is gone, MalformedMessage for
    a frame that is not a message."""
    messages = []
    while connection.poll():
        messages.append(decode(connection.recv_bytes()))
    return messages
