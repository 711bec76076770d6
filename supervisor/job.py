"""One job as the supervisor holds it until it is settled: its record, its phase, and what it holds while it
runs.

The phase is the supervisor's own view, finer than the API's status, and moves only along these edges:

    QUEUED ──▶ RUNNING ──▶ ENDING ──▶ SETTLED
       └──────────────────────────────▲

QUEUED is recorded as `created`; RUNNING and ENDING as `running`; SETTLED as a final status. A job enters
ENDING once, whether its main process exited or the server asked for it to end (a stop, its time limit, a
shutdown); whoever moves it there ends the rest of its processes and then settles it. A queued job that is
stopped or cannot start is settled at once. Any other move is a bug and raises.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from workerctl.protocol.jobs import JobStatus, signal_name
from workerctl.protocol.limits import JobLimits
from workerctl.store.interface import JobRecord, OutputSink
from workerctl.supervisor.containment import JobScope
from workerctl.supervisor.exits import Exit

log = logging.getLogger(__name__)


class Phase(Enum):
    QUEUED = "queued"  # recorded, waiting for a slot
    RUNNING = "running"  # its first process runs
    ENDING = "ending"  # its processes are being ended and its last output read
    SETTLED = "settled"  # its final status is recorded, and nothing of it is left


_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.RUNNING, Phase.SETTLED}),
    Phase.RUNNING: frozenset({Phase.ENDING}),
    Phase.ENDING: frozenset({Phase.SETTLED}),
    Phase.SETTLED: frozenset(),
}


class PhaseError(RuntimeError):
    """A job was asked to do something its phase does not allow."""


@dataclass(frozen=True)
class EndRequest:
    """Why the server is ending a job before it ends on its own."""

    status: JobStatus
    reason: str | None = None


@dataclass
class Launched:
    """What a running job holds, all of it acquired when it was launched."""

    pid: int
    output: OutputSink
    output_fd: int | None  # the read end of its output pipe, until every writer has closed it
    scope: JobScope
    release: Callable[[], None]  # hands back what the host holds for it (host.py), once none of its processes is left
    deadline: asyncio.TimerHandle | None = None
    stop_watching_exit: Callable[[], None] | None = None
    control: socket.socket | None = None  # the control connection to its keeper, if it has one (keepers.py)
    taken_back: bool = False
    """Whether it was taken back from its keeper after an earlier run of the supervisor: then its first process
    (the keeper) is not this one's child, and how it ended comes from the keeper's record."""


class Job:
    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.phase = Phase.QUEUED
        self.launched: Launched | None = None
        self.main_exit: Exit | None = None
        self.end_request: EndRequest | None = None
        self.output_error: str | None = None
        self.settled: asyncio.Future[JobStatus] = asyncio.get_running_loop().create_future()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def owner(self) -> str:
        return self.record.owner

    @property
    def limits(self) -> JobLimits:
        limits = self.record.limits
        assert limits is not None and limits.complete, "a job admitted by this version has its limits recorded"
        return limits

    @property
    def main_unreaped(self) -> bool:
        """Whether the main process's pid is still held for the job (it has not been reaped)."""
        return self.launched is not None and self.main_exit is None

    def _move(self, new: Phase) -> None:
        if new not in _MOVES[self.phase]:
            raise PhaseError(f"job {self.id} cannot go from {self.phase.value} to {new.value}")
        self.phase = new

    def start_running(self, launched: Launched) -> None:
        self._move(Phase.RUNNING)
        self.launched = launched
        self._change_status(JobStatus.RUNNING)

    def resume_running(self, launched: Launched) -> None:
        """Take back a job an earlier run of the supervisor left running (its record says so already)."""
        self._move(Phase.RUNNING)
        self.launched = launched

    def request_end(self, request: EndRequest) -> bool:
        """Have the server end the job; True if that moved it to ENDING, False if it was ending already (its
        main process exited, or another request came first: the first reason stands)."""
        if self.phase is Phase.QUEUED:
            raise PhaseError(f"job {self.id} has no process to end yet; settle it instead")
        if self.phase is not Phase.RUNNING:
            return False
        self._move(Phase.ENDING)
        self.end_request = request
        return True

    def main_exited(self, exit: Exit) -> bool:
        """Note how the main process ended; True if that moved the job to ENDING."""
        if self.launched is None or self.main_exit is not None:
            raise PhaseError(f"job {self.id} has no main process that could have exited")
        self.main_exit = exit
        if self.phase is not Phase.RUNNING:
            return False
        self._move(Phase.ENDING)
        return True

    def settle(self, status: JobStatus, **changes: object) -> None:
        """Give the job its final status; the caller saves the record and lets go of what it held."""
        self._move(Phase.SETTLED)
        self._change_status(status, **changes)
        self.settled.set_result(status)

    def _change_status(self, new: JobStatus, **changes: object) -> None:
        old = self.record.status
        self.record.move_to(new, **changes)
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
