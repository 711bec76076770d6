"""The API's OpenAPI 3.1 document, made from the action table and the replies' Structs: msgspec gives every schema
from the fields' declarations (their JSON names, constraints, help and defaults), and this module adds what the
protocol says beyond them: a request's `action` and `token`, optional fields that may be null, the limits a start
may ask for, and answers that spell out every field. Which HTTP status each error kind gets is the HTTP edge's
choice, so the caller (`web/`) gives it, with the statuses the HTTP server answers itself.

The command line never imports this module: it reads the table, not the document.
"""

from __future__ import annotations

import importlib.metadata
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import msgspec
from workerctl.protocol.actions import ACTIONS, Request, answer_type, api_fields
from workerctl.protocol.errors import ErrorKind
from workerctl.protocol.jobs import MAX_BODY_BYTES, JobStatus
from workerctl.protocol.limits import JobLimits

_COMPONENT = "#/components/schemas/"
_ASKED_LIMITS = "LimitsRequest"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _COMPONENT + name}


_TOKEN = {"type": ["string", "null"], "description": "the caller's token, unless it comes in an `Authorization: "
          "Bearer` header (if both come, they must be the same)"}
_ERROR = {
    "type": "object",
    "description": "Every error, whatever its status.",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one sentence saying what went wrong"}},
    "additionalProperties": False,
}
_ERROR_REF = _ref("Error")
_SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer", "description": "The user's token from the users file. "
                    "It may come in the request body's `token` field instead."},
    "mutualTLS": {"type": "mutualTLS", "description": "With `serve --client-ca`: a client certificate signed by "
                  "that CA whose subject common name is a user in the users file."},
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null."""
    if any(branch == {"type": "null"} for branch in schema.get("anyOf", ())):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key not in keys}


def _request(request: type[Request], schema: dict[str, Any]) -> dict[str, Any]:
    """An action's request: exactly its fields and the token; an optional field may be null, as not given; the
    limits are those a start may ask for. Each field's help and default stand beside its schema."""
    properties: dict[str, Any] = {"action": {"const": request.action.value}, "token": _TOKEN}
    for field in api_fields(request):
        accepted = _asked_limits(_bare(schema["properties"][field.name]))
        if field.required:
            properties[field.name] = {**accepted, "description": field.help}
        else:
            properties[field.name] = {**_nullable(accepted), "description": field.help,
                                      "default": msgspec.to_builtins(field.default)}
    return {**schema, "required": ["action", *schema["required"]], "properties": properties}


def _bare(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its help and default, in whichever branch msgspec put them."""
    if "anyOf" in schema:
        schema = {**schema, "anyOf": [_bare(branch) for branch in schema["anyOf"]]}
    return _without(schema, "description", "default")


def _asked_limits(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema:
        return {**schema, "anyOf": [_asked_limits(branch) for branch in schema["anyOf"]]}
    return _ref(_ASKED_LIMITS) if schema == _ref(JobLimits.__name__) else schema


def _answer(schema: dict[str, Any]) -> dict[str, Any]:
    """A reply: the answer spells out every field, null where there is nothing to say."""
    properties = {name: _without(field, "default") for name, field in schema["properties"].items()}
    return {**schema, "required": list(properties), "properties": properties, "additionalProperties": False}


def _components(answers: list[type]) -> dict[str, dict[str, Any]]:
    """The document's named schemas: the requests, the replies and what they hold."""
    _, made = msgspec.json.schema_components([*ACTIONS.values(), *answers], ref_template=_COMPONENT + "{name}")
    requests = {request.__name__: request for request in ACTIONS.values()}
    schemas: dict[str, dict[str, Any]] = {"Error": _ERROR}
    for name, schema in made.items():
        schema = _without(schema, "title")
        if "description" in schema:
            schema["description"] = " ".join(schema["description"].split())
        if name in requests:
            schema = _request(requests[name], schema)
        elif name == JobLimits.__name__:
            schemas[_ASKED_LIMITS] = {**_without(schema, "required"), "properties": {
                name: _bare(field) for name, field in schema["properties"].items()
                if name not in JobLimits.set_by_the_server}}
            schema = _answer(schema)
        elif schema.get("type") == "object":
            schema = _answer(schema)
        schemas[name] = schema
    # A job's statuses in the order of its life, rather than msgspec's alphabetical one.
    schemas[JobStatus.__name__] = {"type": "string", **schemas[JobStatus.__name__],
                                   "enum": [status.value for status in JobStatus]}
    return schemas


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
    answers = {action.value: answer_type(request) for action, request in ACTIONS.items()}
    schemas = _components([answer for answer in answers.values() if answer is not None])

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
                        "oneOf": [_ref(request.__name__) for request in ACTIONS.values()],
                        "discriminator": {"propertyName": "action", "mapping": {
                            action.value: _COMPONENT + request.__name__ for action, request in ACTIONS.items()}},
                    }}},
                },
                "responses": {
                    "200": {"description": f"The action's answer: {answer_list}.", "content": {
                        "application/json": {"schema": {"oneOf": [
                            _ref(answer.__name__) for answer in dict.fromkeys(answers.values()) if answer]}},
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
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }
