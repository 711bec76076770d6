"""The API's OpenAPI 3.1 document, made from the action table and the replies' dataclasses: a request schema per
action (its fields' wire names, help and defaults from the table, their bounds from what their checks accept), a
schema per reply (from its type hints), the job statuses, and the errors. Which HTTP status each error kind gets
is the HTTP edge's choice, so the caller (`web/`) gives it, with the statuses the HTTP server answers itself.

The command line never imports this module: it reads the table, not the document.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import typing
from collections import defaultdict
from collections.abc import Mapping
from enum import Enum
from typing import Any

from workerctl.protocol.actions import (
    ACTIONS,
    ENV_NAME,
    HOST_NAME,
    LABEL_TEXT,
    MAX_ENV_VARIABLES,
    MAX_KEY_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_LIST_LIMIT,
    RESERVED_ENV_PREFIX,
    Check,
    LimitsRequest,
    Request,
    answer_type,
    api_fields,
    check_env,
    check_flag,
    check_host_name,
    check_key,
    check_label,
    check_labels,
    check_limit,
    check_limits,
    check_offset,
    check_status,
    check_text,
    check_wait,
)
from workerctl.protocol.errors import ErrorKind
from workerctl.protocol.jobs import MAX_BODY_BYTES, MAX_WAIT_SECONDS, JobStatus

_COMPONENT = "#/components/schemas/"
_NO_NUL = "^[^\\x00]*$"
_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _ref(cls: type) -> dict[str, Any]:
    return {"$ref": _COMPONENT + cls.__name__}


_LABEL = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_LENGTH, "pattern": f"^{LABEL_TEXT.pattern}$"}


_ACCEPTED: dict[Check, dict[str, Any]] = {
    check_text: {"type": "string", "minLength": 1, "pattern": _NO_NUL},
    check_key: {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": _NO_NUL},
    check_host_name: {"type": "string", "pattern": f"^{HOST_NAME.pattern}$"},
    check_offset: {"type": "integer", "minimum": 0},
    check_wait: {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    check_limit: {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
    check_status: _ref(JobStatus),
    check_flag: {"type": "boolean"},
    check_limits: _ref(LimitsRequest),
    check_label: _LABEL,
    check_labels: {"type": "array", "items": _LABEL, "maxItems": MAX_LABELS},
    check_env: {"type": "object", "maxProperties": MAX_ENV_VARIABLES,
                "propertyNames": {"pattern": f"^{ENV_NAME.pattern}$",
                                  "not": {"pattern": f"^{RESERVED_ENV_PREFIX}"}},
                "additionalProperties": {"type": "string", "pattern": _NO_NUL}},
}
"""What each check of the action table lets through, as JSON Schema; a check missing here is a KeyError."""

_TOKEN = {"type": ["string", "null"], "description": "the caller's token, unless it comes in an `Authorization: "
          "Bearer` header (if both come, they must be the same)"}
_ERROR = {
    "type": "object",
    "description": "Every error, whatever its status.",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one sentence saying what went wrong"}},
    "additionalProperties": False,
}
_ERROR_REF = {"$ref": _COMPONENT + "Error"}
_SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer", "description": "The user's token from the users file. "
                    "It may come in the request body's `token` field instead."},
    "mutualTLS": {"type": "mutualTLS", "description": "With `serve --client-ca`: a client certificate signed by "
                  "that CA whose subject common name is a user in the users file."},
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null."""
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _description(cls: type) -> str:
    """The class's docstring on one line."""
    return " ".join((cls.__doc__ or "").split())


class _Components:
    """The document's named schemas, each added the first time a schema refers to it."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {"Error": _ERROR}

    def named(self, cls: type) -> dict[str, Any]:
        """A reference to the schema of an enum or a reply's dataclass, adding that schema if new."""
        if cls.__name__ not in self.schemas:
            self.schemas[cls.__name__] = self._enum(cls) if issubclass(cls, Enum) else self._reply(cls)
        return _ref(cls)

    def of(self, hint: Any) -> dict[str, Any]:
        """The schema of a field's type hint: a plain type, an enum, a dataclass, a tuple of them, or one or None."""
        arguments = typing.get_args(hint)
        if type(None) in arguments:
            (inner,) = (argument for argument in arguments if argument is not type(None))
            return _nullable(self.of(inner))
        if typing.get_origin(hint) is tuple:
            return {"type": "array", "items": self.of(arguments[0])}
        if typing.get_origin(hint) is dict:
            return {"type": "object", "additionalProperties": self.of(arguments[1])}
        if isinstance(hint, type) and (issubclass(hint, Enum) or dataclasses.is_dataclass(hint)):
            return self.named(hint)
        return {"type": _JSON_TYPES[hint]}

    def _enum(self, cls: type[Enum]) -> dict[str, Any]:
        return {"type": "string", "description": _description(cls), "enum": [member.value for member in cls]}

    def _reply(self, cls: type) -> dict[str, Any]:
        """A reply's schema: the answer spells out every field, null where there is nothing to say."""
        hints = typing.get_type_hints(cls)
        properties = {field.metadata["wire"]: self.of(hints[field.name]) for field in dataclasses.fields(cls)}
        return {"type": "object", "description": _description(cls), "required": list(properties),
                "properties": properties, "additionalProperties": False}

    def limits_request(self) -> dict[str, Any]:
        """What a start may ask of its job's limits: each optional, each positive."""
        hints = typing.get_type_hints(LimitsRequest)
        properties = {field.metadata["wire"]: {**self.of(hints[field.name]), "exclusiveMinimum": 0}
                      for field in dataclasses.fields(LimitsRequest)}
        return {"type": "object", "description": _description(LimitsRequest),
                "properties": properties, "additionalProperties": False}

    def request(self, request: type[Request]) -> dict[str, Any]:
        """An action's request: exactly its fields and the token; optional fields may be null."""
        properties: dict[str, Any] = {"action": {"const": request.action.value}, "token": _TOKEN}
        required = ["action"]
        for field in api_fields(request):
            accepted = _ACCEPTED[field.check]
            if field.required:
                required.append(field.name)
                properties[field.name] = {**accepted, "description": field.help}
            else:
                properties[field.name] = {**_nullable(accepted), "description": field.help, "default": field.default}
        return {"type": "object", "description": _description(request), "required": required,
                "properties": properties, "additionalProperties": False}


def _errors(statuses: Mapping[int, str], says_when_to_retry: int | None) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, meaning in sorted(statuses.items()):
        response: dict[str, Any] = {"description": meaning, "content": {"application/json": {"schema": _ERROR_REF}}}
        if status == says_when_to_retry:
            response["headers"] = {"Retry-After": {
                "description": "whole seconds after which asking again may succeed (when the user sent too many "
                               "requests)", "schema": {"type": "integer", "minimum": 0}}}
        responses[str(status)] = response
    return responses


def api_document(http_status: Mapping[ErrorKind, int], server_errors: Mapping[int, str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API. `http_status` maps each error kind to its HTTP status; `server_errors`
    are the statuses the HTTP server answers before any action is read (oversized headers, say), with what each
    means."""
    components = _Components()
    requests = {action.value: components.request(request) for action, request in ACTIONS.items()}
    answers = {action.value: answer_type(request) for action, request in ACTIONS.items()}
    answered_with = {answer.__name__: components.named(answer) for answer in answers.values() if answer is not None}
    components.schemas["LimitsRequest"] = components.limits_request()
    components.schemas.update({request.__name__: requests[action.value] for action, request in ACTIONS.items()})

    meanings: dict[int, list[str]] = defaultdict(list)
    for kind, status in http_status.items():
        if kind is not ErrorKind.METHOD_NOT_ALLOWED:  # what other methods get: no operation answers it
            meanings[status].append(f"{kind.value}: {kind.meaning}")
    for status, meaning in server_errors.items():
        meanings[status].append(meaning)
    action_errors = {status: "; ".join(each) for status, each in meanings.items()}
    retry_status = http_status[ErrorKind.RATE_LIMITED]
    answer_list = "; ".join(f"`{action}`: {answer.__name__ if answer else 'the output as text/plain, streamed'}"
                            for action, answer in answers.items())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "workerctl",
            "version": importlib.metadata.version("workerctl"),
            "description": "Run shell commands on a worker host. One endpoint, `POST /`, takes a JSON object whose "
                           "`action` says what to do; `GET /` is a web page that does the same from a browser. Every "
                           "error is JSON, `{\"error\": \"one sentence\"}`: any other path answers "
                           f"{http_status[ErrorKind.NOT_FOUND]}, any other method "
                           f"{http_status[ErrorKind.METHOD_NOT_ALLOWED]}.",
        },
        "paths": {
            "/": {"get": {
                "operationId": "page",
                "summary": "The web view: sign in with a token to see, start and stop one's jobs",
                "security": [],
                "responses": {
                    "200": {"description": "The page; its script and style sheet are under /static/.",
                            "content": {"text/html": {"schema": {"type": "string"}}}},
                    **_errors(server_errors, None),
                },
            }, "post": {
                "operationId": "act",
                "summary": "Start, stop, show, list or read the output of the caller's jobs",
                "security": [{"bearerToken": []}, {"mutualTLS": []}],
                "requestBody": {
                    "required": True,
                    "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes, whatever the Content-Type; "
                                   "`action` picks the fields it may have.",
                    "content": {"application/json": {"schema": {
                        "oneOf": [_ref(request) for request in ACTIONS.values()],
                        "discriminator": {"propertyName": "action", "mapping": {
                            action.value: _COMPONENT + request.__name__ for action, request in ACTIONS.items()}},
                    }}},
                },
                "responses": {
                    "200": {"description": f"The action's answer: {answer_list}.", "content": {
                        "application/json": {"schema": {"oneOf": list(answered_with.values())}},
                        "text/plain": {"schema": {"type": "string"}},
                    }},
                    **_errors(action_errors, retry_status),
                },
            }},
            "/openapi.json": {"get": {
                "operationId": "document",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "The API's OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    **_errors(server_errors, None),
                },
            }},
        },
        "components": {"schemas": components.schemas, "securitySchemes": _SECURITY_SCHEMES},
    }
