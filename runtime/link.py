"""The link between the server's two processes: a `multiprocessing.connection` on a Unix socket, carrying one
JSON message per frame (see `workerctl.protocol.messages`). These helpers set up, read and dispatch it the same
way at both ends."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from workerctl.protocol.messages import AdoptJob, Message, StartJob, StopJob, decode

log = logging.getLogger(__name__)

LinkRequest = StartJob | StopJob | AdoptJob
"""What a client of the link asks of the supervisor, each answered with a reply under its request ID."""

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


MessageHandlers = Mapping[type[Any], Callable[..., None]]
"""Each type of message an end of the link takes, and its handler: called with the caller's context, then the
messages of that type in a list."""


def dispatch(handlers: MessageHandlers, messages: Iterable[Message], *context: Any) -> None:
    """Hand each type of message in `messages` to its handler once, with `context` and every message of that type
    in the order they came (a batch of starts is recorded in one transaction); a message no handler takes is
    logged and dropped: the other end should not send it."""
    batches: dict[type[Any], list[Message]] = {}
    for message in messages:
        batches.setdefault(type(message), []).append(message)
    for kind, batch in batches.items():
        handler = handlers.get(kind)
        if handler is None:
            log.error("ignored %d messages the other end of the link should not send: %.200r", len(batch), batch[0])
        else:
            handler(*context, batch)
