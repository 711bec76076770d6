"""The protocol every part of workerctl shares: actions, job statuses and their transitions, job IDs,
request limits, the API's error types, and the messages the front end and the supervisor exchange.

It imports nothing but the standard library, so the client, the front end and the supervisor can all use it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import signal
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the server reads; anything larger is answered with 413."""

MAX_WAIT_SECONDS = 30.0
"""The longest a status request may wait for something to change (its `wait` field)."""

MAX_ANSWER_OUTPUT_BYTES = 1024 * 1024
"""The most output one status answer carries; `nextOffset` tells where to continue."""


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    STATUS = "status"
    LIST = "list"
    LOGS = "logs"


class JobStatus(StrEnum):
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


# A job ID is "j" and 26 base32 characters (128 random bits): unguessable, and never a number or a
# Python literal, so a shell or a command-line parser passes it through unchanged.
_JOB_ID_PATTERN = re.compile(r"j[a-z2-7]{26}")


def new_job_id() -> str:
    return "j" + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def is_job_id(text: str) -> bool:
    return _JOB_ID_PATTERN.fullmatch(text) is not None


def signal_name(number: int) -> str:
    """"SIGTERM" for 15; the number in words if the signal has no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ApiError(Exception):
    """An answer the API gives instead of a result: an HTTP status and one clear sentence."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    http_status = 400


class Unauthorized(ApiError):
    http_status = 401


class NotFound(ApiError):
    http_status = 404


class MethodNotAllowed(ApiError):
    http_status = 405


class Conflict(ApiError):
    http_status = 409


class PayloadTooLarge(ApiError):
    http_status = 413


class TooManyRequests(ApiError):
    http_status = 429


class Unavailable(ApiError):
    http_status = 503


class InsufficientStorage(ApiError):
    http_status = 507


API_ERRORS: dict[int, type[ApiError]] = {
    cls.http_status: cls
    for cls in (BadRequest, Unauthorized, NotFound, MethodNotAllowed, Conflict, PayloadTooLarge, TooManyRequests,
                Unavailable, InsufficientStorage)
}


def api_error(http_status: int, message: str) -> ApiError:
    """The ApiError for an HTTP status, falling back to a plain ApiError that keeps the status."""
    cls = API_ERRORS.get(http_status)
    if cls is not None:
        return cls(message)
    error = ApiError(message)
    error.http_status = http_status  # type: ignore[misc]
    return error


# --- Messages between the front end and the supervisor -------------------------------------------------------
# The front end sends requests as JSON objects carrying an `op` and a request `id`; the supervisor answers each
# with the same `id` and either `job` (a dict) or `error` ({"status": N, "message": "..."}), and pushes
# `{"event": "changed", "jobs": [...]}` when jobs change state or write output.


@dataclass(frozen=True)
class StartJob:
    op: ClassVar[str] = "start"
    user: str
    command: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class StopJob:
    op: ClassVar[str] = "stop"
    user: str
    job_id: str


SupervisorRequest = StartJob | StopJob
_REQUEST_TYPES: dict[str, type[StartJob] | type[StopJob]] = {StartJob.op: StartJob, StopJob.op: StopJob}


def encode_request(request_id: int, request: SupervisorRequest) -> bytes:
    return encode_message({"id": request_id, "op": request.op, **asdict(request)})


def decode_request(message: dict[str, Any]) -> tuple[int, SupervisorRequest]:
    """Split a request message into its id and typed request; KeyError or TypeError if malformed."""
    fields = dict(message)
    request_id = fields.pop("id")
    request_type = _REQUEST_TYPES[fields.pop("op")]
    return request_id, request_type(**fields)


def encode_message(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode_message(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message
