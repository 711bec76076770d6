"""What the API answers: a job's reference, its summary (what `list` shows), and its details with output
(what `status` shows). Each is a msgspec Struct whose fields carry their JSON names (fields.py); an answer spells
out every field, null where there is nothing to say."""

from __future__ import annotations

from msgspec import Struct, field
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.limits import JobLimits


class JobRef(Struct, rename="camel"):
    """A job and its status: the answer to start and stop."""

    job_id: str = field(name="jobID")
    status: JobStatus


class JobUsage(Struct, rename="camel"):
    """What a job has used: live while it runs, final once it has ended."""

    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None


class JobSummary(Struct, rename="camel"):
    """A job without its output. Times are ISO 8601 in UTC; `signal` names the signal that ended the job."""

    job_id: str = field(name="jobID")
    status: JobStatus
    command: str
    exit_code: int | None
    signal: str | None
    reason: str | None
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    limits: JobLimits | None = None
    usage: JobUsage | None = None
    labels: tuple[str, ...] = ()
    host: str | None = None  # the cluster host that runs it; null on one host


class JobDetail(JobSummary):
    """A job with its output from some offset: `nextOffset` is where to continue, `outputBytes` how much the
    job has written, `outputDropped` how much of that is no longer kept; `env` the variables its start gave."""

    env: dict[str, str] = {}

    output: str = ""
    output_bytes: int = 0
    output_dropped: int = 0
    next_offset: int = 0


class JobList(Struct):
    """The caller's jobs, newest first: the answer to list."""

    jobs: tuple[JobSummary, ...]
