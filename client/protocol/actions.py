"""The API's actions, one row each: the request Struct names the action, its fields (each declared once, with its
JSON name, constraints, rule and help: see fields.py), and its answer. The request parser, the front end's
dispatch, the CLI and the API document all read this table, so a new field is one edit here.

A request body is a JSON object whatever the Content-Type, so `curl -d '{...}'` works. Every action accepts
exactly its own fields (and `token`); anything else is refused rather than ignored, so a typo never passes
silently. Optional fields given as null count as not given. A whole number may be written with a fraction (5.0),
as JSON Schema allows.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta, Struct, field
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.fields import described, refusal, rule, whole
from workerctl.protocol.fields import fields_of as api_fields  # the name the command line's help looks them up by
from workerctl.protocol.jobs import MAX_WAIT_SECONDS, JobStatus
from workerctl.protocol.limits import JobLimits

MAX_LIST_LIMIT = 1000
MAX_KEY_LENGTH = 200
DEFAULT_LIST_LIMIT = 100
MAX_LABELS = 16
MAX_LABEL_LENGTH = 64
MAX_ENV_VARIABLES = 256
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")  # no control characters
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # an agent's --name: a host name, or one like it
HOST_NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64"
RESERVED_ENV_PREFIX = "WORKERCTL_"  # the server's own variables in every job
_NO_NUL = "^[^\\x00]*$"

# What each kind of field accepts, and the sentence that says so when a value breaks it.
Text = Annotated[str, rule("be a non-empty string without NUL characters", min_length=1, pattern=_NO_NUL)]
Key = Annotated[str, rule(f"be a non-empty string of at most {MAX_KEY_LENGTH} characters, without NUL characters",
                          min_length=1, max_length=MAX_KEY_LENGTH, pattern=_NO_NUL)]
HostName = Annotated[str, rule(f"be a host's name ({HOST_NAME_RULE})", pattern=whole(HOST_NAME.pattern))]
Offset = Annotated[int, rule("be a whole number of bytes, 0 or more", ge=0)]
Wait = Annotated[float, rule(f"be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}", ge=0, le=MAX_WAIT_SECONDS)]
ListLimit = Annotated[int, rule(f"be a whole number from 1 to {MAX_LIST_LIMIT}", ge=1, le=MAX_LIST_LIMIT)]
Status = Annotated[JobStatus, rule(f"be one of {', '.join(status.value for status in JobStatus)}")]
Flag = Annotated[bool, rule("be true or false")]
Label = Annotated[str, rule(f"be a non-empty string of at most {MAX_LABEL_LENGTH} characters, none of them control "
                            "characters", min_length=1, max_length=MAX_LABEL_LENGTH, pattern=whole(LABEL_TEXT.pattern))]
Labels = Annotated[tuple[Label, ...], rule(f"be a list of at most {MAX_LABELS} labels", max_length=MAX_LABELS)]
EnvName = Annotated[str, rule("be shell identifiers: letters, digits and _, not starting with a digit",
                              pattern=whole(ENV_NAME.pattern)),
                    Meta(extra_json_schema={"not": {"pattern": f"^{RESERVED_ENV_PREFIX}"}})]  # StartRequest checks it
EnvValue = Annotated[str, rule("be strings without NUL characters", pattern=_NO_NUL)]
Env = Annotated[dict[EnvName, EnvValue], rule(f"be an object of at most {MAX_ENV_VARIABLES} variables, "
                                              'NAME: "value"', max_length=MAX_ENV_VARIABLES)]
AskedLimits = Annotated[JobLimits, rule("be an object with any of timeoutSeconds, memoryBytes, cpus")]


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    STATUS = "status"
    LIST = "list"
    LOGS = "logs"


def _refuse(message: str) -> ApiError:
    return ApiError(ErrorKind.BAD_REQUEST, message)


class StartRequest(Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Start a shell command; answered once the job is recorded."""

    action: ClassVar[Action] = Action.START
    answer: ClassVar[str | None] = "JobRef"
    command: Annotated[Text, described("the command, run as /bin/sh -c COMMAND")]
    idempotency_key: Annotated[Key, described(
        f"a retried start with this key (at most {MAX_KEY_LENGTH} characters) returns the job already started with "
        "it")] | None = None
    limits: Annotated[AskedLimits, described(
        "the job's own limits, within the server's: timeoutSeconds, memoryBytes, cpus")] | None = None
    env: Annotated[Env, described(
        "environment variables for the job, NAME: value, over the server's defaults (PATH, LANG, ...); names are "
        f"shell identifiers not starting {RESERVED_ENV_PREFIX}")] | None = None
    labels: Annotated[Labels, described(f"labels to find the job by (at most {MAX_LABELS}, each at most "
                                        f"{MAX_LABEL_LENGTH} characters)")] = ()
    host: Annotated[HostName, described("the cluster host to run the job on (a cluster's front end only; one host "
                                        "refuses it)")] | None = None

    def __post_init__(self) -> None:
        """What JSON Schema states but msgspec cannot check: the server's own variable names and limits."""
        for name in self.env or ():
            if name.startswith(RESERVED_ENV_PREFIX):
                raise _refuse(f"env: {name} is not allowed: names starting {RESERVED_ENV_PREFIX} are the server's")
        asked = msgspec.to_builtins(self.limits) if self.limits is not None else {}
        for name in sorted(JobLimits.set_by_the_server):
            if asked.get(name) is not None:
                raise _refuse(f"unknown field in limits: {name}")
        msgspec.structs.force_setattr(self, "labels", tuple(dict.fromkeys(self.labels)))


class StopRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """Stop a job and every process it started; answered once they are all gone."""

    action: ClassVar[Action] = Action.STOP
    answer: ClassVar[str | None] = "JobRef"
    job_id: Annotated[Text, described("the job")] = field(name="jobID")


class StatusRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """A job's status and its output from `offset`; with `wait`, once there is something new."""

    action: ClassVar[Action] = Action.STATUS
    answer: ClassVar[str | None] = "JobDetail"
    job_id: Annotated[Text, described("the job")] = field(name="jobID")
    offset: Annotated[Offset, described("the output from this byte on")] = 0
    wait: Annotated[Wait, described(f"seconds to wait for new output or a new status (0 to {MAX_WAIT_SECONDS:g})")] \
        = 0.0


class ListRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """The caller's jobs, newest first, without output."""

    action: ClassVar[Action] = Action.LIST
    answer: ClassVar[str | None] = "JobList"
    status: Annotated[Status, described("only jobs in this status")] | None = None
    limit: Annotated[ListLimit, described(f"at most this many jobs (1 to {MAX_LIST_LIMIT})")] = DEFAULT_LIST_LIMIT
    label: Annotated[Label, described("only jobs with this label")] | None = None


class LogsRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """A job's output as plain text, streamed; with `follow`, until the job ends."""

    action: ClassVar[Action] = Action.LOGS
    answer: ClassVar[str | None] = None  # text/plain, not JSON
    job_id: Annotated[Text, described("the job")] = field(name="jobID")
    offset: Annotated[Offset, described("the output from this byte on")] = 0
    follow: Annotated[Flag, described("keep streaming until the job ends")] = False


Request = StartRequest | StopRequest | StatusRequest | ListRequest | LogsRequest

ACTIONS: dict[Action, type[Request]] = {
    request.action: request for request in (StartRequest, StopRequest, StatusRequest, ListRequest, LogsRequest)
}
_ACTION_NAMES = ", ".join(ACTIONS)
_NAMES = {action: frozenset(field.name for field in api_fields(request)) for action, request in ACTIONS.items()}
_AUTHENTICATION_FIELDS = frozenset({"action", "token"})


def answer_type(request: type[Request]) -> type | None:
    """The reply Struct a request is answered with; None for a stream of text. (Named, not imported, in each
    row: the command line reads this table too, and need not pay for the replies' classes.)"""
    if request.answer is None:
        return None
    from workerctl.protocol import replies

    answer: type = getattr(replies, request.answer)
    return answer


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; a 400 if it is not one."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise _refuse("the request body is nested too deeply") from None
    except ValueError:  # also numbers of more than 4300 digits
        raise _refuse("the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _refuse("the request body must be a JSON object")
    return parsed


def parse_request(body: dict[str, Any]) -> Request:
    """The typed request a body asks for; a 400 that says exactly what is wrong if it asks for none."""
    if "action" not in body:
        raise _refuse(f"missing field \"action\": use one of {_ACTION_NAMES}")
    try:
        action = Action(body["action"])
    except (ValueError, TypeError):
        raise _refuse(f"unknown action {_shown(body['action'])}: use one of {_ACTION_NAMES}") from None
    unknown = body.keys() - _NAMES[action] - _AUTHENTICATION_FIELDS
    if unknown:
        raise _refuse(f"unknown field{'s' if len(unknown) > 1 else ''} for {action}: {', '.join(sorted(unknown))}")
    given = {name: _as_json_schema_reads(value, name) for name, value in body.items()
             if value is not None and name not in _AUTHENTICATION_FIELDS}
    request = ACTIONS[action]
    try:
        return msgspec.convert(given, request)
    except msgspec.ValidationError as error:
        raise _refuse(refusal(request, error)) from None


def _as_json_schema_reads(value: Any, name: str) -> Any:
    """`value` with every whole number written with a fraction made an int (JSON, like JSON Schema's "integer",
    does not tell 5 from 5.0); a 400 naming `name` if a string in it is not valid Unicode (JSON allows a lone
    surrogate escape such as "\\ud800", which no UTF-8 can carry)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse(f"{name} must be valid Unicode text") from None
        return value
    if isinstance(value, dict):
        return {key: _as_json_schema_reads(item, f"{name}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json_schema_reads(item, f"{name}[{index}]") for index, item in enumerate(value)]
    return value


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
