"""What the API answers: a job's reference, its summary (what `list` shows), and its details with output
(what `status` shows). Each is a dataclass whose fields carry their JSON names. They are built once per answer
and not frozen: a frozen dataclass costs more to build, on the path of every status answer."""

from __future__ import annotations

from dataclasses import dataclass

from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.wire import wire_field


@dataclass
class JobRef:
    """A job and its status: the answer to start and stop."""

    job_id: str = wire_field("jobID")
    status: JobStatus = wire_field("status")


@dataclass
class JobLimits:
    """The limits a job runs under: seconds, bytes of memory, cores, processes and threads."""

    timeout_seconds: float | None = wire_field("timeoutSeconds", default=None)
    memory_bytes: int | None = wire_field("memoryBytes", default=None)
    cpus: float | None = wire_field("cpus", default=None)
    processes: int | None = wire_field("processes", default=None)


@dataclass
class JobUsage:
    """What a job has used: live while it runs, final once it has ended."""

    cpu_seconds: float | None = wire_field("cpuSeconds", default=None)
    peak_memory_bytes: int | None = wire_field("peakMemoryBytes", default=None)


@dataclass
class JobSummary:
    """A job without its output. Times are ISO 8601 in UTC; `signal` names the signal that ended the job."""

    job_id: str = wire_field("jobID")
    status: JobStatus = wire_field("status")
    command: str = wire_field("command")
    exit_code: int | None = wire_field("exitCode")
    signal: str | None = wire_field("signal")
    reason: str | None = wire_field("reason")
    created_at: str | None = wire_field("createdAt")
    started_at: str | None = wire_field("startedAt")
    ended_at: str | None = wire_field("endedAt")
    limits: JobLimits | None = wire_field("limits", default=None)
    usage: JobUsage | None = wire_field("usage", default=None)
    labels: tuple[str, ...] = wire_field("labels", default=())
    host: str | None = wire_field("host", default=None)  # the cluster host that runs it; null on one host


@dataclass
class JobDetail(JobSummary):
    """A job with its output from some offset: `nextOffset` is where to continue, `outputBytes` how much the
    job has written, `outputDropped` how much of that is no longer kept; `env` the variables its start gave."""

    env: dict[str, str] = wire_field("env", default_factory=dict)

    output: str = wire_field("output", default="")
    output_bytes: int = wire_field("outputBytes", default=0)
    output_dropped: int = wire_field("outputDropped", default=0)
    next_offset: int = wire_field("nextOffset", default=0)


@dataclass
class JobList:
    """The caller's jobs, newest first: the answer to list."""

    jobs: tuple[JobSummary, ...] = wire_field("jobs")
