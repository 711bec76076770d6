"""One job as the supervisor holds it while it is not yet final: its record, its processes, its output pipe,
and the rules for moving it between statuses."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workerctl.protocol import JobStatus, check_transition, signal_name
from workerctl.supervisor.accounts import JobUser
from workerctl.supervisor.containment import JobScope
from workerctl.store.output_log import OutputWriter
from workerctl.store.records import JobRecord, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndRequest:
    """Why the server is ending a job before it ends on its own."""

    status: JobStatus
    reason: str | None = None


@dataclass
class Job:
    record: JobRecord
    pid: int | None = None
    scope: JobScope | None = None
    output_fd: int | None = None
    output: OutputWriter | None = None
    output_error: str | None = None
    workdir: Path | None = None
    user: JobUser | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    end_request: EndRequest | None = None
    deadline: asyncio.TimerHandle | None = None
    exit_watch: Callable[[], None] | None = None  # stops watching the main process's pidfd
    winding_down: asyncio.Task[None] | None = None
    settled: asyncio.Future[JobStatus] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def owner(self) -> str:
        return self.record.owner

    @property
    def status(self) -> JobStatus:
        return self.record.status

    @property
    def main_exited(self) -> bool:
        return self.exit_code is not None or self.exit_signal is not None

    @property
    def main_unreaped(self) -> bool:
        return self.pid is not None and not self.main_exited

    def record_exit(self, si_code: int, si_status: int) -> None:
        """Keep the main process's exit status as `os.waitid` reported it."""
        if si_code == os.CLD_EXITED:
            self.exit_code = si_status
        else:
            self.exit_signal = si_status

    def request_end(self, request: EndRequest) -> bool:
        """Ask for the job to be ended by the server; False if it is already ending or its main process has
        already exited on its own (then it finishes as it is)."""
        if self.end_request is not None or self.main_exited:
            return False
        self.end_request = request
        return True

    def move_to(self, new: JobStatus, **changes: object) -> None:
        """Change status (the caller saves the record) and log the transition."""
        old = self.record.status
        check_transition(old, new)
        if new.is_final:
            changes.setdefault("ended_at", now())
        elif new is JobStatus.RUNNING:
            changes.setdefault("started_at", now())
        self.record.status = new
        for name, value in changes.items():
            setattr(self.record, name, value)
        details = describe_end(self.record) if new.is_final else ""
        log.info("job %s (user %s): %s -> %s%s", self.id, self.owner, old, new, details)


def describe_end(record: JobRecord) -> str:
    parts = []
    if record.exit_code is not None:
        parts.append(f"exit code {record.exit_code}")
    if record.signal is not None:
        parts.append(f"killed by {signal_name(record.signal)}")
    if record.reason:
        parts.append(record.reason)
    return ", " + ", ".join(parts) if parts else ""
