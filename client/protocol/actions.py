"""The API's actions, one row each: the request dataclass names the action, its fields (with their JSON names,
checks and help), and its answer. The request parser, the front end's dispatch, the CLI and the API
document all read this table, so a new field is one edit here.

A request body is a JSON object whatever the Content-Type, so `curl -d '{...}'` works. Every action accepts
exactly its own fields (and `token`); anything else is refused rather than ignored, so a typo never passes
silently. Optional fields given as null count as not given.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar

from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import MAX_WAIT_SECONDS, JobStatus
from workerctl.protocol.wire import wire_field

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

Check = Callable[[str, Any], Any]
"""Turns a field's JSON value (never null) into the request's value, or raises a 400 naming the field."""


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    STATUS = "status"
    LIST = "list"
    LOGS = "logs"


def _refuse(message: str) -> ApiError:
    return ApiError(ErrorKind.BAD_REQUEST, message)


def check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _refuse(f"{name} must be a non-empty string")
    if "\x00" in value:
        raise _refuse(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        raise _refuse(f"{name} must be valid Unicode text") from None
    return value


def check_host_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not HOST_NAME.fullmatch(value):
        raise _refuse(f"{name} must be a host's name ({HOST_NAME_RULE}), not {_shown(value)}")
    return value


def check_key(name: str, value: Any) -> str:
    key = check_text(name, value)
    if len(key) > MAX_KEY_LENGTH:
        raise _refuse(f"{name} must be at most {MAX_KEY_LENGTH} characters")
    return key


def _whole_number(value: object) -> int | None:
    """`value` as an int if it is a whole number, else None. JSON does not tell 5 from 5.0, nor does JSON Schema's
    "integer": both are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_offset(name: str, value: Any) -> int:
    offset = _whole_number(value)
    if offset is None or offset < 0:
        raise _refuse(f"{name} must be a whole number of bytes, 0 or more")
    return offset


def check_wait(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise _refuse(f"{name} must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")
    return float(value)


def check_limit(name: str, value: Any) -> int:
    limit = _whole_number(value)
    if limit is None or not 1 <= limit <= MAX_LIST_LIMIT:
        raise _refuse(f"{name} must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return limit


def check_status(name: str, value: Any) -> JobStatus:
    try:
        return JobStatus(value)
    except (ValueError, TypeError):
        raise _refuse(f"{name} must be one of {', '.join(status.value for status in JobStatus)}") from None


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse(f"{name} must be true or false")
    return value


def check_label(name: str, value: Any) -> str:
    label = check_text(name, value)
    if len(label) > MAX_LABEL_LENGTH or not LABEL_TEXT.fullmatch(label):
        raise _refuse(f"{name} must be at most {MAX_LABEL_LENGTH} characters, none of them control characters")
    return label


def check_labels(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise _refuse(f"{name} must be a list of at most {MAX_LABELS} labels")
    return tuple(dict.fromkeys(check_label(f"{name}[{index}]", label) for index, label in enumerate(value)))


def check_env(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ENV_VARIABLES:
        raise _refuse(f"{name} must be an object of at most {MAX_ENV_VARIABLES} variables, NAME: \"value\"")
    for variable, text in value.items():
        if not ENV_NAME.fullmatch(variable):
            raise _refuse(f"{name}: {_shown(variable)} is not a variable name (letters, digits and _, not starting "
                          "with a digit)")
        if variable.startswith(RESERVED_ENV_PREFIX):
            raise _refuse(f"{name}: {variable} is not allowed: names starting {RESERVED_ENV_PREFIX} are the "
                          "server's")
        if not isinstance(text, str) or "\x00" in text:
            raise _refuse(f"{name}.{variable} must be a string without NUL characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(f"{name}.{variable} must be valid Unicode text") from None
    return dict(value)


@dataclasses.dataclass(frozen=True)
class LimitsRequest:
    """What a start may ask of its job's limits; each must be positive and within the server's maxima."""

    timeout_seconds: float | None = wire_field("timeoutSeconds", default=None)
    memory_bytes: int | None = wire_field("memoryBytes", default=None)
    cpus: float | None = wire_field("cpus", default=None)


_LIMIT_NAMES = {"timeoutSeconds": "timeout_seconds", "memoryBytes": "memory_bytes", "cpus": "cpus"}


def check_limits(name: str, value: Any) -> LimitsRequest:
    if not isinstance(value, dict):
        raise _refuse(f"{name} must be an object with any of {', '.join(_LIMIT_NAMES)}")
    unknown = value.keys() - _LIMIT_NAMES.keys()
    if unknown:
        raise _refuse(f"unknown field{'s' if len(unknown) > 1 else ''} in {name}: {', '.join(sorted(unknown))}")
    given = {}
    for key, attribute in _LIMIT_NAMES.items():
        limit = value.get(key)
        if limit is None:
            continue
        whole = key == "memoryBytes"
        if whole:
            limit = _whole_number(limit)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise _refuse(f"{name}.{key} must be a positive {'whole number of bytes' if whole else 'number'}")
        given[attribute] = limit
    return LimitsRequest(**given)


def api_field(name: str, check: Check, help: str, **options: Any) -> Any:
    """A request field called `name` on the wire, checked by `check`; required unless it has a default."""
    return wire_field(name, metadata={"check": check, "help": help}, **options)


@dataclasses.dataclass(frozen=True)
class ApiField:
    """One field of an action, as the parser, the CLI and the API document see it."""

    attribute: str
    name: str
    check: Check
    help: str
    required: bool
    default: Any


def api_fields(request: type) -> tuple[ApiField, ...]:
    return tuple(
        ApiField(field.name, field.metadata["wire"], field.metadata["check"], field.metadata["help"],
                 field.default is dataclasses.MISSING, None if field.default is dataclasses.MISSING else field.default)
        for field in dataclasses.fields(request))


@dataclasses.dataclass(frozen=True)
class StartRequest:
    """Start a shell command; answered once the job is recorded."""

    action: ClassVar[Action] = Action.START
    answer: ClassVar[str | None] = "JobRef"
    command: str = api_field("command", check_text, "the command, run as /bin/sh -c COMMAND")
    idempotency_key: str | None = api_field(
        "idempotencyKey", check_key, f"a retried start with this key (at most {MAX_KEY_LENGTH} characters) "
        "returns the job already started with it", default=None)
    limits: LimitsRequest | None = api_field(
        "limits", check_limits, "the job's own limits, within the server's: timeoutSeconds, memoryBytes, cpus",
        default=None)
    env: dict[str, str] | None = api_field(
        "env", check_env, "environment variables for the job, NAME: value, over the server's defaults (PATH, "
        f"LANG, ...); names are shell identifiers not starting {RESERVED_ENV_PREFIX}", default=None)
    labels: tuple[str, ...] = api_field(
        "labels", check_labels, f"labels to find the job by (at most {MAX_LABELS}, each at most "
        f"{MAX_LABEL_LENGTH} characters)", default=())
    host: str | None = api_field(
        "host", check_host_name, "the cluster host to run the job on (a cluster's front end only; one host refuses "
        "it)", default=None)


@dataclasses.dataclass(frozen=True)
class StopRequest:
    """Stop a job and every process it started; answered once they are all gone."""

    action: ClassVar[Action] = Action.STOP
    answer: ClassVar[str | None] = "JobRef"
    job_id: str = api_field("jobID", check_text, "the job")


@dataclasses.dataclass(frozen=True)
class StatusRequest:
    """A job's status and its output from `offset`; with `wait`, once there is something new."""

    action: ClassVar[Action] = Action.STATUS
    answer: ClassVar[str | None] = "JobDetail"
    job_id: str = api_field("jobID", check_text, "the job")
    offset: int = api_field("offset", check_offset, "the output from this byte on", default=0)
    wait: float = api_field("wait", check_wait, "seconds to wait for new output or a new status "
                            f"(0 to {MAX_WAIT_SECONDS:g})", default=0.0)


@dataclasses.dataclass(frozen=True)
class ListRequest:
    """The caller's jobs, newest first, without output."""

    action: ClassVar[Action] = Action.LIST
    answer: ClassVar[str | None] = "JobList"
    status: JobStatus | None = api_field("status", check_status, "only jobs in this status", default=None)
    limit: int = api_field("limit", check_limit, f"at most this many jobs (1 to {MAX_LIST_LIMIT})",
                           default=DEFAULT_LIST_LIMIT)
    label: str | None = api_field("label", check_label, "only jobs with this label", default=None)


@dataclasses.dataclass(frozen=True)
class LogsRequest:
    """A job's output as plain text, streamed; with `follow`, until the job ends."""

    action: ClassVar[Action] = Action.LOGS
    answer: ClassVar[str | None] = None  # text/plain, not JSON
    job_id: str = api_field("jobID", check_text, "the job")
    offset: int = api_field("offset", check_offset, "the output from this byte on", default=0)
    follow: bool = api_field("follow", check_flag, "keep streaming until the job ends", default=False)


Request = StartRequest | StopRequest | StatusRequest | ListRequest | LogsRequest

ACTIONS: dict[Action, type[Request]] = {
    request.action: request for request in (StartRequest, StopRequest, StatusRequest, ListRequest, LogsRequest)
}
_ACTION_NAMES = ", ".join(ACTIONS)
_FIELDS = {action: api_fields(request) for action, request in ACTIONS.items()}
_AUTHENTICATION_FIELDS = frozenset({"action", "token"})


def answer_type(request: type[Request]) -> type | None:
    """The reply dataclass a request is answered with; None for a stream of text. (Named, not imported, in each
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
    fields = _FIELDS[action]
    unknown = body.keys() - {field.name for field in fields} - _AUTHENTICATION_FIELDS
    if unknown:
        raise _refuse(f"unknown field{'s' if len(unknown) > 1 else ''} for {action}: {', '.join(sorted(unknown))}")
    values = {}
    for field in fields:
        value = body.get(field.name)
        if value is not None or field.required:
            values[field.attribute] = field.check(field.name, value)
    return ACTIONS[action](**values)


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
