"""The supervisor's end of its link with the front end: a `multiprocessing.connection` listener on a Unix socket.

The front end connects (and reconnects, after either side restarts), proving it knows the authentication key;
every message is one JSON object (see `workerctl.protocol.messages`). A multiprocessing Queue is not used: its
shared locks stay held forever when a process holding them is killed, and it cannot be handed to a process that
is already running, so a restarted front end or supervisor could never talk to the survivor. A connection per
front end has neither problem.

Accepting runs in a thread (the handshake blocks); reading runs on the event loop. Sending blocks, so each
connection gets a send timeout: a front end that stops reading is dropped rather than stalling the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, Listener
from pathlib import Path

from workerctl.protocol.messages import MalformedMessage, Message, encode
from workerctl.runtime.link import read_available, tune_link_socket

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 0.5

MessageHandler = Callable[[Connection, list[Message]], None]


class LinkListener:
    def __init__(self, address: Path, authkey: bytes, on_messages: MessageHandler) -> None:
        self.address = address
        self.authkey = authkey
        self.on_messages = on_messages
        self.connections: set[Connection] = set()
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.address.unlink(missing_ok=True)  # left by a supervisor that died
        self._listener = Listener(str(self.address), family="AF_UNIX", authkey=self.authkey)
        os.chmod(self.address, 0o600)
        threading.Thread(target=self._accept_forever, name="link-accept", daemon=True).start()

    def _accept_forever(self) -> None:
        assert self._listener is not None and self._loop is not None
        while True:
            try:
                connection = self._listener.accept()
            except OSError:
                return  # closed
            except Exception as error:  # a peer without the key, or one that hung up mid-handshake
                log.warning("refused a link connection: %s", error)
                continue
            tune_link_socket(connection, SEND_TIMEOUT_SECONDS)
            self._loop.call_soon_threadsafe(self._attach, connection)

    def _attach(self, connection: Connection) -> None:
        self.connections.add(connection)
        asyncio.get_running_loop().add_reader(connection.fileno(), self._readable, connection)
        log.info("front end connected")

    def _readable(self, connection: Connection) -> None:
        try:
            messages = read_available(connection)
        except (EOFError, OSError, MalformedMessage) as error:
            self._drop(connection, f"front end disconnected ({type(error).__name__})")
            return
        if messages:
            self.on_messages(connection, messages)

    def send(self, connection: Connection, message: Message) -> None:
        if connection not in self.connections:
            return  # gone since the request came in; the front end already answered 503
        try:
            connection.send_bytes(encode(message))
        except OSError as error:
            self._drop(connection, f"cannot send to the front end: {error}")

    def broadcast(self, message: Message) -> None:
        for connection in list(self.connections):
            self.send(connection, message)

    def _drop(self, connection: Connection, why: str) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            asyncio.get_running_loop().remove_reader(connection.fileno())
            connection.close()
            log.info("%s", why)

    def close(self) -> None:
        for connection in list(self.connections):
            self._drop(connection, "link closed")
        if self._listener is not None:
            self._listener.close()
