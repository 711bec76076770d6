"""The store's interface: what the front end reads and what the supervisor writes, whatever keeps it.

The local back end (`local.py`: SQLite and files in the data directory) implements it; a back end for several
hosts implements the same, and neither side changes. A job's record and a piece of its output are the same
types in every back end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from workerctl.protocol.jobs import JobStatus, check_transition
from workerctl.protocol.limits import JobLimits


@dataclass
class JobRecord:
    """A job as stored: who started what, and how far it got. Times are seconds since the epoch."""

    id: str
    owner: str
    command: str
    status: JobStatus
    created_at: float
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    idempotency_key: str | None = None
    output_bytes: int = 0
    # The limits it runs under, every one set (none recorded for jobs of versions before limits).
    limits: JobLimits | None = None
    # What it used: live while it runs, final once it has ended.
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    # What its start gave it beside the command.
    env: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    # The cluster host (agent) that runs it; None on a single host, whose local store keeps no such column.
    host: str | None = None

    def move_to(self, new: JobStatus, **changes: object) -> None:
        """Give the job a new status, with `changes` to its other fields; InvalidTransition if it cannot go from
        its status to `new`. The one way any part of workerctl changes a job's status (tests/unit/
        test_status_owner.py checks that nothing assigns one): the supervisor as a job starts and ends, the
        supervisor and the lost-host sweep as they settle jobs a run or a host left, a stop of a job waiting on
        another host. The stores check the same moves against the stored record as they save it."""
        check_transition(self.status, new)
        if new.is_final:
            changes.setdefault("ended_at", now())
        elif new is JobStatus.RUNNING:
            changes.setdefault("started_at", now())
        self.status = new
        for name, value in changes.items():
            setattr(self, name, value)


LIMIT_COLUMNS = tuple(limit.name for limit in msgspec.structs.fields(JobLimits))
"""How every back end keeps a record's limits: a column (or key) each, as records of earlier versions have them."""


def limit_columns(limits: JobLimits | None) -> dict[str, Any]:
    """A record's limits as the columns that keep them."""
    return {name: getattr(limits, name) if limits is not None else None for name in LIMIT_COLUMNS}


def limits_from_columns(values: Mapping[str, Any]) -> JobLimits | None:
    """A record's limits from the columns that keep them; None for a job of a version before limits."""
    if values.get("timeout_seconds") is None:
        return None
    return JobLimits(**{name: values.get(name) for name in LIMIT_COLUMNS})


def now() -> float:
    """Wall-clock time for records (timestamps shown to users); deadlines use the monotonic clock."""
    return time.time()


@dataclass(frozen=True)
class OutputPart:
    """Bytes read from a job's output, after `skipped` bytes that were dropped before them."""

    skipped: int
    data: bytes


@dataclass(frozen=True)
class OutputChunk:
    """Output read from some offset: its parts in order, where to read next, and how much the job has written
    so far (`total`) and how much of that is not kept (`dropped`). Offsets count bytes of the job's whole
    output stream, so a reader can ask for "everything from byte N" and never see a byte twice."""

    parts: list[OutputPart]
    next_offset: int
    total: int
    dropped: int


class OutputWriteError(OSError):
    """Output could not be stored (a full or broken disk); the job runs on, the rest of its output is lost."""


class JobReader(Protocol):
    """What the front end reads: a user's jobs and their output. Every lookup is by job ID *and* owner, so
    another user's job is exactly as absent as a job that does not exist."""

    def get(self, job_id: str, owner: str) -> JobRecord | None: ...

    def list(self, owner: str, status: JobStatus | None, limit: int, label: str | None = None) -> list[JobRecord]:
        """The owner's jobs, newest first; only those in `status` and with `label`, where given."""

    def read_output(self, record: JobRecord, offset: int, limit: int | None) -> OutputChunk:
        """The job's kept output from stream offset `offset`, at most `limit` bytes of it."""

    def close(self) -> None: ...


class OutputSink(Protocol):
    """Where one running job's output goes, kept within the output limits."""

    total: int  # bytes written so far, kept or not

    def write(self, data: bytes) -> None:
        """Append `data`; OutputWriteError if it cannot be stored."""

    def close(self) -> None: ...


class JobWriter(Protocol):
    """What the supervisor writes. Record changes wait in a batch until `commit`, which makes them visible to
    readers all at once; a failed commit raises StoreError and `rollback` drops the batch."""

    def get(self, job_id: str, owner: str) -> JobRecord | None: ...

    def find_by_key(self, owner: str, key: str) -> JobRecord | None:
        """The owner's job started with idempotency key `key`."""

    def unsettled(self) -> list[JobRecord]:
        """Jobs an earlier run of this host left created or running, oldest first."""

    def insert(self, record: JobRecord) -> None: ...

    def save(self, record: JobRecord) -> None:
        """Write every field of an existing record."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def claim(self, record: JobRecord) -> bool:
        """Record at once, before its first process starts, that this host runs the job (`record`, running):
        False, and nothing written, if its stored record is no longer this host's created job (another host took
        it over). A store no other host writes has nothing to check, and leaves the record to the next commit."""

    def adopt(self, job_id: str, owner: str, from_host: str) -> JobRecord | None:
        """Make the owner's job, created on `from_host` and not started there, this host's, at once; its record,
        or None if it is no longer that (started, ended, or taken over already)."""

    def open_output(self, job_id: str) -> OutputSink:
        """A new, empty output for a job about to start; OutputWriteError if it cannot be made."""

    def reopen_output(self, job_id: str) -> OutputSink:
        """The output of a job an earlier run of the supervisor started, to go on appending to (a job that ran
        while no supervisor did: live restore); a new one if it has none."""

    def holding_back(self) -> bool:
        """Whether output written while the store could not be reached waits in memory for the next commit,
        which sends it before the batch (a shared store that is down for a while)."""

    def prune(self, older_than: float, keep_per_owner: int) -> int:
        """Delete final jobs that ended before `older_than`, or beyond the newest `keep_per_owner` of their
        owner, with their output; how many were deleted. StoreError if they cannot be."""

    def free_reserve(self) -> bool:
        """Release the space held back for the records when the storage is full; False if there is none."""

    def close(self) -> None: ...


class StoreError(Exception):
    """The store could not do what was asked (a full disk, a broken database); the message says why."""


class KeyTaken(StoreError):
    """A new job's idempotency key is another job's of the same owner, recorded by another writer meanwhile."""


class StoreUnreachable(StoreError):
    """A shared store cannot be reached right now (down, or not answering in time); it may be later."""
