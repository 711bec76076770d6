"""The messages the front end and the supervisor exchange over their link, and their codec.

The front end sends requests, each with a request ID; the supervisor answers each with that ID and either the
job (`JobReply`) or a refusal (`Refusal`, an error kind and a sentence), and tells the front end which jobs
changed (`JobsChanged`) so it can wake whoever waits on them. An agent's relay also tells it now and then to fence
itself (`FenceJobs`), and passes on a cluster front end's request to take over a job that waits on a lost host
(`AdoptJob`). On the wire each message is one JSON object
whose `type` names it: plain data, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from workerctl.protocol.actions import LimitsRequest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.wire import from_wire, to_wire


@dataclass(frozen=True)
class StartJob:
    type: ClassVar[str] = "start"
    request_id: int
    user: str
    command: str
    idempotency_key: str | None = None
    limits: LimitsRequest | None = None
    env: dict[str, str] | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopJob:
    type: ClassVar[str] = "stop"
    request_id: int
    user: str
    job_id: str


@dataclass(frozen=True)
class AdoptJob:
    """From a cluster's front end: take over job `job_id` of `user`, created on host `from_host` (lost since)
    and not started there, and run it here as if it had been started here."""

    type: ClassVar[str] = "adopt"
    request_id: int
    user: str
    job_id: str
    from_host: str


@dataclass(frozen=True)
class JobReply:
    """The job a request started or stopped, and its status now."""

    type: ClassVar[str] = "job"
    request_id: int
    job_id: str
    status: JobStatus


@dataclass(frozen=True)
class Refusal:
    """The supervisor could not do what a request asked."""

    type: ClassVar[str] = "refusal"
    request_id: int
    kind: ErrorKind
    message: str

    @classmethod
    def of(cls, request_id: int, error: ApiError) -> Refusal:
        return cls(request_id, error.kind, error.message)

    def error(self) -> ApiError:
        return ApiError(self.kind, self.message)


@dataclass(frozen=True)
class JobsChanged:
    """These jobs changed status or wrote output; the change is committed to the store already."""

    type: ClassVar[str] = "changed"
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class SupervisorClosing:
    """The supervisor is shutting down with the server: it takes no more requests and will not come back."""

    type: ClassVar[str] = "closing"


@dataclass(frozen=True)
class FenceJobs:
    """From an agent's relay, each time it has renewed its host's lease: end every job whose record is no longer
    this host's unfinished job. A host whose lease lapsed had its jobs settled as lost, and they must not run on;
    nothing is answered."""

    type: ClassVar[str] = "fence"


SupervisorRequest = StartJob | StopJob
Reply = JobReply | Refusal
Message = StartJob | StopJob | AdoptJob | JobReply | Refusal | JobsChanged | SupervisorClosing | FenceJobs

_TYPES: dict[str, type[Message]] = {cls.type: cls for cls in (StartJob, StopJob, AdoptJob, JobReply, Refusal,
                                                              JobsChanged, SupervisorClosing, FenceJobs)}


class MalformedMessage(ValueError):
    """Bytes on the link that are not a message."""


def encode(message: Message) -> bytes:
    return json.dumps({"type": message.type, **to_wire(message)}, separators=(",", ":")).encode()


def decode(data: bytes) -> Message:
    """The message in `data`; MalformedMessage if there is none."""
    try:
        fields: dict[str, Any] = json.loads(data)
        return from_wire(_TYPES[fields["type"]], fields)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise MalformedMessage(f"not a link message ({type(error).__name__}: {error}): {data[:200]!r}") from None
