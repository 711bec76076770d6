"""The messages the front end and the supervisor exchange over their link, and their codec.

The front end sends requests, each with a request ID; the supervisor answers each with that ID and either the
job (`JobReply`) or a refusal (`Refusal`, an error kind and a sentence), and tells the front end which jobs
changed (`JobsChanged`) so it can wake whoever waits on them. An agent's relay also tells it now and then to fence
itself (`FenceJobs`), and passes on a cluster front end's request to take over a job that waits on a lost host
(`AdoptJob`). On the wire each message is one JSON object
whose `type` names it (a msgspec tagged union, declared as fields.py says): plain data, never pickle.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.limits import JobLimits


class StartJob(Struct, frozen=True, tag="start"):
    request_id: int
    user: str
    command: str
    idempotency_key: str | None = None
    limits: JobLimits | None = None
    env: dict[str, str] | None = None
    labels: tuple[str, ...] = ()


class StopJob(Struct, frozen=True, tag="stop"):
    request_id: int
    user: str
    job_id: str


class AdoptJob(Struct, frozen=True, tag="adopt"):
    """From a cluster's front end: take over job `job_id` of `user`, created on host `from_host` (lost since)
    and not started there, and run it here as if it had been started here."""

    request_id: int
    user: str
    job_id: str
    from_host: str


class JobReply(Struct, frozen=True, tag="job"):
    """The job a request started or stopped, and its status now."""

    request_id: int
    job_id: str
    status: JobStatus


class Refusal(Struct, frozen=True, tag="refusal"):
    """The supervisor could not do what a request asked."""

    request_id: int
    kind: ErrorKind
    message: str

    @classmethod
    def of(cls, request_id: int, error: ApiError) -> Refusal:
        return cls(request_id, error.kind, error.message)

    def error(self) -> ApiError:
        return ApiError(self.kind, self.message)


class JobsChanged(Struct, frozen=True, tag="changed"):
    """These jobs changed status or wrote output; the change is committed to the store already."""

    job_ids: tuple[str, ...]


class SupervisorClosing(Struct, frozen=True, tag="closing"):
    """The supervisor is shutting down with the server: it takes no more requests and will not come back."""


class FenceJobs(Struct, frozen=True, tag="fence"):
    """From an agent's relay, each time it has renewed its host's lease: end every job whose record is no longer
    this host's unfinished job. A host whose lease lapsed had its jobs settled as lost, and they must not run on;
    nothing is answered."""


SupervisorRequest = StartJob | StopJob
Reply = JobReply | Refusal
Message = StartJob | StopJob | AdoptJob | JobReply | Refusal | JobsChanged | SupervisorClosing | FenceJobs

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Message)


class MalformedMessage(ValueError):
    """Bytes on the link that are not a message."""


def encode(message: Message) -> bytes:
    return _ENCODER.encode(message)


def decode(data: bytes) -> Message:
    """The message in `data`; MalformedMessage if there is none."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as error:  # ValidationError too
        raise MalformedMessage(f"not a link message ({error}): {data[:200]!r}") from None
