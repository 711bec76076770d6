"""Reaching the Redis that holds the jobs of several hosts: the location URL and its key prefix, connections that
give up within seconds, the names of every key, and one sentence for every Redis error.

A location is a redis-py URL, `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…` for TLS (then
`?ssl_ca_certs=FILE` names the CA), plus one parameter of ours, `prefix=NAME` (default `workerctl`): every key
starts with `NAME:`, so deployments that share a Redis never see each other's jobs. `socket_timeout` and
`socket_connect_timeout` (seconds) may be given in the URL too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, OutOfMemoryError, ReadOnlyError
from redis.retry import Retry
from workerctl.store.interface import StoreError, StoreUnreachable

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "workerctl"
# A Redis that is down refuses at once; one that hangs is given up on after this long, so a front end answers
# 503 within seconds instead of holding its requests.
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 2.0
_OLDEST_VERSION = (6, 2)  # ZDIFF


@dataclass(frozen=True)
class RedisLocation:
    url: str  # for redis-py: carries the password, so it is never logged or put in a message
    prefix: str
    where: str  # host:port/db, for messages

    @classmethod
    def parse(cls, text: str) -> RedisLocation:
        """StoreError if `text` is not a Redis URL this back end can use."""
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefixes = [value for name, value in query if name == "prefix"]
        prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
        if not prefix:
            raise StoreError("the Redis location's prefix is empty; leave it out or name one")
        try:
            port = parts.port or 6379
        except ValueError:
            raise StoreError("the Redis location's port is not a number") from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise StoreError("a Redis location is redis://[USER:PASSWORD@]HOST[:PORT][/DB] or rediss://…")
        rest = urlencode([(name, value) for name, value in query if name != "prefix"])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return cls(url, prefix, f"{parts.hostname}:{port}{parts.path or '/0'}")


def connect(location: RedisLocation) -> redis.Redis:
    """A client for `location`: a command whose connection turns out broken is sent once more on a new one (the
    pooled connections of a Redis that restarted are all broken), which every command of the store allows, as
    each does the same when sent twice; one that times out is not (Redis is hung, and the caller must hear so
    within the timeout)."""
    try:
        return redis.Redis.from_url(location.url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                    socket_timeout=COMMAND_TIMEOUT_SECONDS,
                                    retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                                    client_name="workerctl")
    except ValueError as error:
        raise StoreError(f"the Redis location is not usable: {error}") from None


def describe(error: redis.RedisError, where: str) -> str:
    """What went wrong, as the end of a sentence that begins "cannot …: "."""
    # A failed command of a pipeline is noted with its arguments (output bytes, say): keep only Redis's words.
    text = str(error).rpartition(" of pipeline caused error: ")[2]
    if isinstance(error, AuthenticationError) or text.startswith("invalid username"):
        return f"Redis at {where} refused the user or password of the location"
    if isinstance(error, redis.TimeoutError):
        return f"Redis at {where} did not answer in time"
    if isinstance(error, redis.ConnectionError):
        cause = error.__cause__ or error.__context__
        reason = getattr(cause, "strerror", None) or text.rstrip(".")
        return f"Redis at {where} cannot be reached ({reason})"
    if isinstance(error, OutOfMemoryError):
        return f"Redis at {where} is out of memory (its maxmemory)"
    if isinstance(error, NoPermissionError):
        return f"the Redis user may not do this ({text})"
    if isinstance(error, ReadOnlyError):
        return f"Redis at {where} is a read-only replica"
    return f"Redis at {where} answered: {text}"


@contextmanager
def storing(what: str, where: str) -> Iterator[None]:
    """Turn any Redis error in the block into StoreError("cannot WHAT: …"), StoreUnreachable if Redis cannot be
    reached or does not answer in time (a refused password is not that: it will not pass)."""
    try:
        yield
    except redis.RedisError as error:
        unreachable = isinstance(error, (redis.ConnectionError, redis.TimeoutError)) and \
            not isinstance(error, AuthenticationError)
        kind = StoreUnreachable if unreachable else StoreError
        raise kind(f"cannot {what}: {describe(error, where)}") from error


def check_server(client: redis.Redis, where: str) -> None:
    """StoreError if the Redis is too old for this back end; a warning in the log for settings that would lose
    jobs: no append-only file, or a memory policy that evicts keys. A Redis whose ACL forbids INFO is trusted."""
    try:
        info = client.info("server") | client.info("persistence") | client.info("memory")
    except redis.RedisError:
        return
    version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:2] if part.isdigit())
    if version < _OLDEST_VERSION:
        raise StoreError(f"Redis at {where} is version {info.get('redis_version')}; the job store needs 6.2 or later")
    if not info.get("aof_enabled"):
        log.warning("Redis at %s keeps no append-only file (appendonly no): a restart of Redis loses the jobs "
                    "recorded since its last snapshot", where)
    policy = info.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        log.warning("Redis at %s may evict job records when full (maxmemory-policy %s): set noeviction",
                    where, policy)


class RedisKeys:
    """The name of every key, all under one prefix. Each kind of key has a tag of its own, and the owner or job
    ID ends the name, so no two names collide whatever characters those hold."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sequence = f"{prefix}:sequence"  # a counter: the order jobs were created in, across all writers
        self.owners = f"{prefix}:owners"  # a set of every owner that has jobs
        self.unsettled = f"{prefix}:unsettled"  # created or running jobs, by sequence number
        self.ended_at = f"{prefix}:ended-at"  # final jobs, by the time they ended
        self.reserve = f"{prefix}:reserve"  # memory held back for the records, released when Redis is full

    def job(self, job_id: str) -> str:
        """The job's record, as JSON."""
        return f"{self.prefix}:job:{job_id}"

    def unsettled_on(self, host: str | None) -> str:
        """The host's created and running jobs, by sequence number ("" for jobs of no host)."""
        return f"{self.prefix}:unsettled-on:{host or ''}"

    def jobs_of(self, owner: str) -> str:
        """The owner's jobs, by sequence number."""
        return f"{self.prefix}:jobs:{owner}"

    def keys_of(self, owner: str) -> str:
        """The owner's idempotency keys, each to its job's ID."""
        return f"{self.prefix}:keys:{owner}"

    def output(self, job_id: str) -> str:
        """The job's output limits and how many bytes it has written (see redis_output.py)."""
        return f"{self.prefix}:output:{job_id}"

    def output_piece(self, job_id: str, piece: int) -> str:
        """Bytes of the job's output: piece 0 is the head, piece N the N-th tail segment."""
        return f"{self.prefix}:piece:{piece}:{job_id}"
