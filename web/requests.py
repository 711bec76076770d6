"""Turning a request body into a typed request, or a 400 that says exactly what is wrong.

The body is a JSON object whatever the Content-Type, so `curl -d '{...}'` works. Every action accepts exactly
its own fields (and `token`); anything else is refused rather than ignored, so a typo never passes silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workerctl.protocol import MAX_WAIT_SECONDS, Action, BadRequest, JobStatus, Unauthorized

MAX_LIST_LIMIT = 1000
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StartRequest:
    command: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class StopRequest:
    job_id: str


@dataclass(frozen=True)
class StatusRequest:
    job_id: str
    offset: int = 0
    wait: float = 0.0


@dataclass(frozen=True)
class ListRequest:
    status: JobStatus | None = None
    limit: int = 100


@dataclass(frozen=True)
class LogsRequest:
    job_id: str
    offset: int = 0
    follow: bool = False


ApiRequest = StartRequest | StopRequest | StatusRequest | ListRequest | LogsRequest

_FIELDS: dict[Action, frozenset[str]] = {
    Action.START: frozenset({"command", "idempotencyKey"}),
    Action.STOP: frozenset({"jobID"}),
    Action.STATUS: frozenset({"jobID", "offset", "wait"}),
    Action.LIST: frozenset({"status", "limit"}),
    Action.LOGS: frozenset({"jobID", "offset", "follow"}),
}
_ACTIONS = ", ".join(action.value for action in Action)


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError:  # also numbers of more than 4300 digits
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("the request body must be a JSON object")
    return parsed


def token_from(body: dict[str, Any], authorization: str | None) -> str:
    """The caller's token, from the body's `token` or an `Authorization: Bearer` header."""
    header_token = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        header_token = value.strip()
    body_token = body.get("token")
    if body_token is not None and not isinstance(body_token, str):
        raise Unauthorized("invalid token")
    if header_token is not None and body_token is not None and header_token != body_token:
        raise Unauthorized("the token in the body and the one in the Authorization header differ")
    token = header_token if header_token is not None else body_token
    if not token:
        raise Unauthorized("missing token: send it as \"token\" in the body or as 'Authorization: Bearer <token>'")
    return token


def parse_request(body: dict[str, Any]) -> tuple[Action, ApiRequest]:
    if "action" not in body:
        raise BadRequest(f"missing field \"action\": use one of {_ACTIONS}")
    try:
        action = Action(body["action"])
    except (ValueError, TypeError):
        raise BadRequest(f"unknown action {_shown(body['action'])}: use one of {_ACTIONS}") from None
    unknown = set(body) - _FIELDS[action] - {"action", "token"}
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} for {action}: "
                         f"{', '.join(sorted(unknown))}")
    if action is Action.START:
        key = body.get("idempotencyKey")
        if key is not None:
            key = _text(body, "idempotencyKey")
            if len(key) > MAX_KEY_LENGTH:
                raise BadRequest(f"idempotencyKey must be at most {MAX_KEY_LENGTH} characters")
        return action, StartRequest(_text(body, "command"), key)
    if action is Action.STOP:
        return action, StopRequest(_text(body, "jobID"))
    if action is Action.STATUS:
        return action, StatusRequest(_text(body, "jobID"), _offset(body), _wait(body))
    if action is Action.LIST:
        return action, ListRequest(_status(body), _limit(body))
    return action, LogsRequest(_text(body, "jobID"), _offset(body), _flag(body, "follow"))


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    if "\x00" in value:
        raise BadRequest(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        raise BadRequest(f"{name} must be valid Unicode text") from None
    return value


def _given(body: dict[str, Any], name: str, default: Any) -> Any:
    """An optional field's value; null counts as not given."""
    value = body.get(name)
    return default if value is None else value


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _offset(body: dict[str, Any]) -> int:
    value = _given(body, "offset", 0)
    if not _whole_number(value) or value < 0:
        raise BadRequest("offset must be a whole number of bytes, 0 or more")
    return value


def _wait(body: dict[str, Any]) -> float:
    value = _given(body, "wait", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")
    return float(value)


def _limit(body: dict[str, Any]) -> int:
    value = _given(body, "limit", 100)
    if not _whole_number(value) or not 1 <= value <= MAX_LIST_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return value


def _status(body: dict[str, Any]) -> JobStatus | None:
    value = body.get("status")
    if value is None:
        return None
    try:
        return JobStatus(value)
    except (ValueError, TypeError):
        raise BadRequest(f"status must be one of {', '.join(s.value for s in JobStatus)}") from None


def _flag(body: dict[str, Any], name: str) -> bool:
    value = _given(body, name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value
