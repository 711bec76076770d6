"""Opening the store: the one place that knows which back end keeps the jobs, so neither the front end nor the
supervisor names one.

A location is a data directory (the local back end: SQLite and files on this host), or a `redis://` or
`rediss://` URL (the Redis back end, shared by several hosts; see redis_connection.py for the URL's form). The
Redis back end is imported only when asked for: a single host needs neither it nor the redis package.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from workerctl.store.interface import JobReader, JobWriter, StoreError, StoreUnreachable
from workerctl.store.layout import DataLayout
from workerctl.store.local import LocalJobReader, LocalJobWriter
from workerctl.store.output_log import OutputLimits

REDIS_SCHEMES = ("redis://", "rediss://")
_REACH_AGAIN_SECONDS = 1.0

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_redis_location(location: Path | str) -> bool:
    return isinstance(location, str) and location.startswith(REDIS_SCHEMES)


def open_reader(location: Path | str, may_be_down: bool = False) -> JobReader:
    """The front end's reads; StoreError or OSError if the store cannot be opened. A shared store that
    `may_be_down` is opened even while it cannot be reached (its reads fail until it can)."""
    if is_redis_location(location):
        return _redis_back_end("redis_records").RedisJobReader(str(location), may_be_down)
    return LocalJobReader(DataLayout(Path(location)))


def open_writer(location: Path | str, max_output_bytes: int, host: str | None = None) -> JobWriter:
    """The supervisor's writes, keeping each job's output whole up to `max_output_bytes` and its head and tail
    past that; StoreError or OSError if the store cannot be opened. In a shared store, `host` names the writer's
    host: its new jobs are marked with it, and its unsettled jobs are only those."""
    limits = OutputLimits.for_cap(max_output_bytes)
    if is_redis_location(location):
        return _redis_back_end("redis_store").RedisJobWriter(str(location), limits, host)
    return LocalJobWriter(DataLayout(Path(location)), limits)


def when_reachable(open_store: Callable[[], T]) -> T:
    """`open_store()`, tried again every second for as long as the store cannot be reached (said once in the
    log): a shared store that is down when a host starts is waited for, as it is while the host runs."""
    waiting = False
    while True:
        try:
            return open_store()
        except StoreUnreachable as error:
            if not waiting:
                log.warning("%s; waiting until it can be", error)
            waiting = True
        time.sleep(_REACH_AGAIN_SECONDS)


def _redis_back_end(module: str) -> ModuleType:
    """The Redis back end's module `module` (the reader's or the writer's), imported only when a location names
    Redis: a single host needs no Redis client installed."""
    try:
        return importlib.import_module(f"workerctl.store.{module}")
    except ModuleNotFoundError as error:
        if error.name != "redis":
            raise
        raise StoreError("a redis:// store needs the redis package: pip install 'workerctl[cluster]'") from None
