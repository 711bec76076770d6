"""A hostile client for the soak: the attacks the front door must shrug off, each in a process of its own and from a
loopback address of its own (127.0.0.2 and up; the normal clients come from 127.0.0.1), so the per-address
connection cap falls on the attacker and never on the clients beside it.

- truncated bodies: declare Content-Length 65536, send 60,000 bytes, stop sending (20 a second);
- idle connections: hold more TLS connections than the cap allows, sending nothing, reopening those the server
  closes;
- unfinished handshakes: the same with TCP connections that send the first 5 bytes of a TLS record and no more;
- oversized headers: a request whose headers are past the server's 16 KiB limit (20 a second);
- a flood: requests back to back on a few kept-alive connections, half with a token nobody has (401), half as a
  user of its own, who soon meets the per-user rate limit (429).

Each attack counts what the server did (answers by status, refusals, closes) and reports the counts at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import secrets
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.http_client import HttpConnection, HttpError

PACED_PER_SECOND = 20.0  # truncated bodies and oversized headers
HOLD_CONNECTIONS = 128  # idle connections and unfinished handshakes: twice the server's default cap per address
FLOOD_CONNECTIONS = 4
_CHECK_SECONDS = 0.5  # how often held connections are checked and topped up
_REFUSED_WITHIN_SECONDS = 1.0  # a held connection the server closed this soon was refused, not timed out
_TIMEOUT_SECONDS = 30.0
_TRUNCATED_HEAD = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 65536\r\n\r\n")
_OVERSIZED_HEAD = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 20_000 + b"\r\n\r\n"
_UNFINISHED_RECORD = b"\x16\x03\x01\x02\x00"  # a TLS handshake record of 512 bytes, none of which follow


@dataclass(frozen=True)
class Target:
    """The server, and the loopback address one attack comes from."""

    port: int
    tls: ssl.SSLContext
    token: str  # the hostile user's
    address: str

    def tcp(self) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=_TIMEOUT_SECONDS,
                                       source_address=(self.address, 0))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return raw

    def tls_connection(self) -> ssl.SSLSocket:
        return self.tls.wrap_socket(self.tcp(), server_hostname="127.0.0.1")


class _AttackerConnection(HttpConnection):
    """An HttpConnection from the attack's own address."""

    def __init__(self, target: Target, token: str) -> None:
        super().__init__(target.port, target.tls, headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": "application/json"})
        self.target = target

    def _connect(self) -> socket.socket:
        return self.target.tls_connection()


def _paced(deadline: float) -> Iterator[None]:
    """Yield PACED_PER_SECOND times a second until `deadline`."""
    due = time.monotonic()
    while (now := time.monotonic()) < deadline:
        time.sleep(max(0.0, due - now))
        due = max(due, now) + 1 / PACED_PER_SECOND
        yield


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def _send_and_close(target: Target, deadline: float, request: bytes) -> Counter[str]:
    """Send `request` on a connection of its own PACED_PER_SECOND times a second, end the stream, and count what
    the server does: its answer's status, "closed" without a word, or the TLS alert it closed with."""
    counts: Counter[str] = Counter()
    for _ in _paced(deadline):
        try:
            with target.tls_connection() as sock:
                sock.sendall(request)
                # End the TCP stream but keep TLS (SSLSocket.shutdown would drop it, and the session tickets still
                # to be read would look like an answer).
                socket.socket.shutdown(sock, socket.SHUT_WR)
                answer = _read_to_end(sock)
            counts[f"HTTP {answer[9:12].decode(errors='replace')}" if answer else "closed"] += 1
        except OSError as error:
            counts[getattr(error, "reason", None) or type(error).__name__] += 1
    return counts


def truncated_bodies(target: Target, deadline: float) -> Counter[str]:
    return _send_and_close(target, deadline, _TRUNCATED_HEAD + b"x" * 60_000)  # 5,536 bytes short: no answer


def oversized_headers(target: Target, deadline: float) -> Counter[str]:
    return _send_and_close(target, deadline, _OVERSIZED_HEAD)  # 431, in JSON


def _server_closed(sock: socket.socket) -> bool:
    try:
        return not sock.recv(1)
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def _hold(target: Target, deadline: float, open_one: Callable[[Target], socket.socket]) -> Counter[str]:
    """Keep HOLD_CONNECTIONS connections open that send nothing, reopening those the server closes."""
    counts: Counter[str] = Counter()
    held: dict[socket.socket, float] = {}  # -> when opened
    try:
        while time.monotonic() < deadline:
            for sock, opened in [(sock, opened) for sock, opened in held.items() if _server_closed(sock)]:
                lived = time.monotonic() - opened
                counts["refused" if lived < _REFUSED_WITHIN_SECONDS else "closed by the server"] += 1
                counts["longest held, s"] = max(counts["longest held, s"], round(lived))
                sock.close()
                del held[sock]
            counts["most held at once"] = max(counts["most held at once"], len(held))
            while len(held) < HOLD_CONNECTIONS:
                try:
                    sock = open_one(target)
                except OSError:
                    counts["refused"] += 1
                    break  # at the cap: try again at the next check
                sock.setblocking(False)
                held[sock] = time.monotonic()
            time.sleep(_CHECK_SECONDS)
    finally:
        for sock in held:
            sock.close()
    return counts


def idle_connections(target: Target, deadline: float) -> Counter[str]:
    return _hold(target, deadline, Target.tls_connection)


def unfinished_handshakes(target: Target, deadline: float) -> Counter[str]:
    def open_unfinished(target: Target) -> socket.socket:
        sock = target.tcp()
        sock.sendall(_UNFINISHED_RECORD)
        return sock
    return _hold(target, deadline, open_unfinished)


def _flood_one(target: Target, token: str, deadline: float) -> Counter[str]:
    connection = _AttackerConnection(target, token)
    body = json.dumps({"action": "list"}).encode()
    counts: Counter[str] = Counter()
    while time.monotonic() < deadline:
        try:
            connection.post(body)
            counts["HTTP 200"] += 1
        except HttpError as error:
            counts[str(error).split(":")[0]] += 1
    connection.close()
    return counts


def flood(target: Target, deadline: float) -> Counter[str]:
    """Requests back to back: half with a token nobody has, half as the hostile user."""
    tokens = [secrets.token_urlsafe(32) if number % 2 else target.token for number in range(FLOOD_CONNECTIONS)]
    with ThreadPoolExecutor(FLOOD_CONNECTIONS) as pool:
        return sum(pool.map(lambda token: _flood_one(target, token, deadline), tokens), Counter())


ATTACKS: dict[str, Callable[[Target, float], Counter[str]]] = {
    "truncated bodies": truncated_bodies,
    "idle connections": idle_connections,
    "unfinished handshakes": unfinished_handshakes,
    "oversized headers": oversized_headers,
    "flood": flood,
}


def _attack(name: str, target: Target, deadline: float, results: Connection) -> None:
    counts = ATTACKS[name](target, deadline)
    counts["CPU seconds"] = round(time.process_time())  # the attacker's own, taken from the server's two cores
    results.send(counts)


Attacks = list[tuple[str, BaseProcess, Connection]]


def start_attacks(port: int, tls: ssl.SSLContext, token: str, seconds: float) -> Attacks:
    """Start every attack, each in a process from an address of its own, to run for `seconds`."""
    context = multiprocessing.get_context("fork")
    deadline = time.monotonic() + seconds
    attacks: Attacks = []
    for number, name in enumerate(ATTACKS):
        receiver, sender = context.Pipe(duplex=False)
        target = Target(port, tls, token, f"127.0.0.{number + 2}")
        process = context.Process(target=_attack, args=(name, target, deadline, sender), name=f"hostile: {name}")
        process.start()
        attacks.append((name, process, receiver))
    return attacks


def attack_counts(attacks: Attacks) -> dict[str, Counter[str]]:
    """Wait for the attacks to end; what each saw."""
    counts = {name: receiver.recv() for name, _, receiver in attacks}
    for _, process, _ in attacks:
        process.join()
    return counts
