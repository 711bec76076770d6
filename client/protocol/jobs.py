"""Jobs as every side sees them: their statuses and the moves between them, their IDs, and the API's limits."""

from __future__ import annotations

import re
import signal
from enum import StrEnum

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the server reads; anything larger is answered with 413."""

MAX_WAIT_SECONDS = 30.0
"""The longest a status request may wait for something to change (its `wait` field)."""

MAX_ANSWER_OUTPUT_BYTES = 1024 * 1024
"""The most output one status answer carries; `nextOffset` tells where to continue."""


class JobStatus(StrEnum):
    """A job's status: created (waiting for a slot), running, then finished, stopped or error, which are final."""

    CREATED = "created"  # accepted, waiting for a slot
    RUNNING = "running"
    FINISHED = "finished"  # exited on its own; the exit code says how
    STOPPED = "stopped"  # stopped by its owner
    ERROR = "error"  # could not start, or was ended by the server (the time limit); a reason says why

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.ERROR})

_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.CREATED: frozenset({JobStatus.RUNNING, JobStatus.STOPPED, JobStatus.ERROR}),
    JobStatus.RUNNING: frozenset({JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.ERROR}),
    JobStatus.FINISHED: frozenset(),
    JobStatus.STOPPED: frozenset(),
    JobStatus.ERROR: frozenset(),
}


class InvalidTransition(Exception):
    """A job was asked to move between statuses that do not connect."""


def check_transition(old: JobStatus, new: JobStatus) -> None:
    """Raise InvalidTransition unless a job may go from `old` to `new`."""
    if new not in _TRANSITIONS[old]:
        raise InvalidTransition(f"a job cannot go from {old} to {new}")


def stored_before(new: JobStatus) -> frozenset[JobStatus]:
    """The statuses a stored record may have when it is saved as `new`: those that move to `new`, and `new`
    itself unless it is final (a running job's record is saved again as its usage grows; a final one never)."""
    same = frozenset() if new.is_final else frozenset({new})
    return same | {old for old, moves in _TRANSITIONS.items() if new in moves}


# A job ID is "j" and 26 base32 characters (128 random bits): unguessable, and never a number or a
# Python literal, so a shell or a command-line parser passes it through unchanged.
_JOB_ID_PATTERN = re.compile(r"j[a-z2-7]{26}")


def new_job_id() -> str:
    import base64  # here: the supervisor alone makes IDs, and `secrets` costs every CLI command 4 ms to import
    import secrets

    return "j" + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def is_job_id(text: str) -> bool:
    return _JOB_ID_PATTERN.fullmatch(text) is not None


def signal_name(number: int) -> str:
    """"SIGTERM" for 15; the number in words if the signal has no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
