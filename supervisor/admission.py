"""Admission: which start requests become jobs, and when each waiting job may run.

Pure decisions, no processes and no I/O: a start whose idempotency key this user already used returns that
job (or is refused if the command differs); a start past the user's queue limit is refused; any other becomes
a new job, which waits in the pool (see pool.py) until it is its turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus, new_job_id
from workerctl.protocol.limits import JobLimits
from workerctl.protocol.messages import StartJob
from workerctl.store.interface import JobRecord, now
from workerctl.supervisor.pool import JobPool

FindByKey = Callable[[str, str], JobRecord | None]


@dataclass(frozen=True)
class LimitsPolicy:
    """The server's limits for one job: what a job gets unless its start asks for less (or, for the time
    limit, for more up to `longest_timeout_seconds`), and the most it may ask for."""

    timeout_seconds: float
    longest_timeout_seconds: float
    memory_bytes: int
    cpus: float
    processes: int

    def resolve(self, asked: JobLimits | None) -> JobLimits:
        """The job's limits, every one set; a BAD_REQUEST ApiError if it asks for more than the server allows."""
        asked = asked or JobLimits()
        for name, value, most, flag in (
                ("timeoutSeconds", asked.timeout_seconds, self.longest_timeout_seconds, "max-job-timeout"),
                ("memoryBytes", asked.memory_bytes, self.memory_bytes, "job-memory"),
                ("cpus", asked.cpus, self.cpus, "job-cpus")):
            if value is not None and value > most:
                shown = most if isinstance(most, int) else f"{most:g}"
                raise ApiError(ErrorKind.BAD_REQUEST, f"limits.{name} may be at most {shown} on this server "
                                                      f"(its --{flag})")
        return JobLimits(asked.timeout_seconds or self.timeout_seconds, asked.memory_bytes or self.memory_bytes,
                         asked.cpus or self.cpus, self.processes)

    def bring_within(self, record: JobRecord) -> None:
        """Bring the limits of a job another host admitted (and this one takes over) within this host's: none
        above what a start may ask for here, and this host's processes."""
        admitted = record.limits or JobLimits()
        record.limits = JobLimits(min(admitted.timeout_seconds or self.timeout_seconds, self.longest_timeout_seconds),
                                  min(admitted.memory_bytes or self.memory_bytes, self.memory_bytes),
                                  min(admitted.cpus or self.cpus, self.cpus), self.processes)


@dataclass(frozen=True)
class NewJob:
    record: JobRecord


@dataclass(frozen=True)
class ExistingJob:
    record: JobRecord


Verdict: TypeAlias = NewJob | ExistingJob | ApiError


class Admission:
    def __init__(self, pool: JobPool, max_queued_per_user: int, find_by_key: FindByKey,
                 limits: LimitsPolicy) -> None:
        self.pool = pool
        self.max_queued_per_user = max_queued_per_user
        self.find_by_key = find_by_key
        self.limits = limits

    def decide(self, requests: list[StartJob]) -> list[Verdict]:
        """A verdict for each request, in order. Requests in one batch see each other: two with the same key
        make one job, and each new job counts against its user's queue limit."""
        verdicts: list[Verdict] = []
        by_key: dict[tuple[str, str], JobRecord] = {}
        queued = {request.user: self.pool.waiting_for(request.user) for request in requests}
        for request in requests:
            key = (request.user, request.idempotency_key) if request.idempotency_key else None
            existing = key and (by_key.get(key) or self.find_by_key(*key))
            if existing:
                verdicts.append(ExistingJob(existing) if existing.command == request.command else ApiError(
                    ErrorKind.CONFLICT,
                    f"idempotencyKey {request.idempotency_key!r} was used for another command, job {existing.id}"))
            elif queued[request.user] >= self.max_queued_per_user:
                verdicts.append(ApiError(ErrorKind.QUEUE_FULL, f"{queued[request.user]} of your jobs are waiting "
                                         "already, the most there may be; start more once some have run"))
            else:
                try:
                    limits = self.limits.resolve(request.limits)
                except ApiError as refused:
                    verdicts.append(refused)
                    continue
                queued[request.user] += 1
                record = JobRecord(new_job_id(), request.user, request.command, JobStatus.CREATED, now(),
                                   idempotency_key=request.idempotency_key, limits=limits,
                                   env=dict(request.env or {}), labels=request.labels)
                if key:
                    by_key[key] = record
                verdicts.append(NewJob(record))
        return verdicts
