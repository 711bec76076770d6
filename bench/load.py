"""Closed-loop load: N client processes each repeat one operation as fast as it completes, for a fixed window.

Clients are processes, not threads, so they do not share one GIL with each other; each sets up its own
connection before the window opens, and all start together on the shared monotonic clock. Operations that end
after the window closes are not counted. Every client is forked from the benchmark's own process (which runs no
threads while it forks), so operations can be closures; a client that overruns the window by far is killed.
"""

from __future__ import annotations

import array
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from bench.stats import percentile

Operation = Callable[[], None]
OperationFactory = Callable[[int], Operation]  # given the client's index, sets up and returns its operation

_START_DELAY_SECONDS = 0.3  # time for every client to be waiting when the window opens
_READY_TIMEOUT_SECONDS = 30.0
_OVERRUN_SECONDS = 60.0


class LoadError(Exception):
    """A client failed; the message carries its traceback."""


@dataclass(frozen=True)
class LoadResult:
    clients: int
    seconds: float
    latencies: list[float]  # seconds, one per operation completed inside the window

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


def run_load(factory: OperationFactory, clients: int, seconds: float) -> LoadResult:
    """Run `clients` processes repeating their operation for `seconds`; every completed operation's latency."""
    context = multiprocessing.get_context("fork")  # cheap, and lets operations be closures (see above)
    workers = []
    for index in range(clients):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_client, args=(factory, index, child_end), daemon=True)
        process.start()
        child_end.close()
        workers.append((process, parent_end))
    try:
        for _, connection in workers:
            _expect(connection, _READY_TIMEOUT_SECONDS, "ready")
        start = time.monotonic() + _START_DELAY_SECONDS
        for _, connection in workers:
            connection.send((start, start + seconds))
        latencies: list[float] = []
        for _, connection in workers:
            latencies.extend(_expect(connection, _START_DELAY_SECONDS + seconds + _OVERRUN_SECONDS, "done"))
    finally:
        for process, connection in workers:
            connection.close()
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()
    return LoadResult(clients, seconds, latencies)


def _expect(connection: Connection, timeout: float, what: str) -> array.array[float]:
    if not connection.poll(timeout):
        raise LoadError(f"a client was not {what} within {timeout:g} s")
    try:
        kind, payload = connection.recv()
    except EOFError:
        raise LoadError("a client died without a word") from None
    if kind == "error":
        raise LoadError(payload)
    latencies: array.array[float] = payload
    return latencies


def _client(factory: OperationFactory, index: int, connection: Connection) -> None:
    try:
        operation = factory(index)
        operation()  # warm up: connect, handshake, fill caches
        connection.send(("ready", array.array("d")))
        start, end = connection.recv()
        latencies = array.array("d")
        time.sleep(max(start - time.monotonic(), 0.0))
        while (began := time.monotonic()) < end:
            operation()
            finished = time.monotonic()
            if finished > end:
                break
            latencies.append(finished - began)
        connection.send(("done", latencies))
    except BaseException:  # report everything: the parent must not wait for a client that is gone
        connection.send(("error", traceback.format_exc()))
