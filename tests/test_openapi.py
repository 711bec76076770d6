"""The server and its API document agree: `GET /openapi.json` serves docs/openapi.json to anyone, requests that
schemathesis generates from the served document get only answers the document describes (never a 5xx), and
the answers about a real job match their schemas.

Generated starts would run their commands for real, and a generated string is any shell command at all: each
start's command is replaced with a harmless one before it is sent. Only the parser sees a command, so nothing
is lost: a command the parser would refuse is kept as it is, and refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from support import Server
from workerctl.protocol.actions import parse_request
from workerctl.protocol.errors import ApiError

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
HARMLESS = "echo generated"


MAXIMA = {"timeoutSeconds": 5, "memoryBytes": 256 * 1024**2, "cpus": 1}
"""The server's limits for one job, which a start may lower but not raise: a setting, so not in the document."""


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--job-timeout", str(MAXIMA["timeoutSeconds"]), "--job-memory", str(MAXIMA["memoryBytes"]),
            "--job-cpus", str(MAXIMA["cpus"]))


def test_the_document_is_served_without_a_token(server: Server) -> None:
    answer = server.raw("GET", path="/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == json.loads(DOCUMENT.read_text())


def test_the_document_answers_only_get_in_json(server: Server) -> None:
    answer = server.raw("POST", body=b"{}", path="/openapi.json")
    assert answer.status == 405 and answer.headers["Allow"] == "GET"
    assert set(answer.body) == {"error"}


def harmless(body: Any) -> None:
    """Make a generated body safe to send: a command the server would run becomes HARMLESS. A token that is a
    string goes, so that the Authorization header's counts (a generated one would only be refused); both
    changes keep a valid body valid and an invalid one invalid."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("token"), str):
        del body["token"]
    command = body.get("command")
    try:
        parse_request({"action": "start", "command": command})
    except ApiError:
        return
    body["command"] = HARMLESS


DESCRIBED = schemathesis.openapi.from_path(DOCUMENT)
OPERATIONS = (("/", "POST"), ("/openapi.json", "GET"))
REQUESTS = st.one_of(*(DESCRIBED[path][method].as_strategy(mode) for path, method in OPERATIONS
                       for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)))


@pytest.fixture(scope="module")
def session(server: Server) -> Iterator[requests.Session]:
    """One keep-alive session for every generated request: a TLS handshake each would cost more than the request."""
    with requests.Session() as kept:
        yield kept


@pytest.mark.slow
@settings(max_examples=200, deadline=None, database=None)
@given(case=REQUESTS)
def test_generated_requests_get_documented_answers(server: Server, session: requests.Session,
                                                   case: schemathesis.Case) -> None:
    harmless(case.body)
    case.call_and_validate(base_url=server.url, session=session,
                           headers={"Authorization": f"Bearer {server.users.tokens['alice']}"},
                           verify=str(server.tls.ca), excluded_checks=[positive_data_acceptance],
                           additional_checks=[valid_requests_are_refused_only_past_the_servers_limits])


def valid_requests_are_refused_only_past_the_servers_limits(_: Any, response: schemathesis.Response,
                                                            case: schemathesis.Case) -> None:
    """schemathesis's positive_data_acceptance, but for the one thing the document cannot say: a start that asks
    for more than this server allows is refused (400), and so is a start naming a cluster host (this is one host)."""
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code == 400:
        asked = case.body.get("limits") or {}
        past_limits = any((asked.get(name) or 0) > most for name, most in MAXIMA.items())
        assert past_limits or case.body.get("host") is not None, \
            f"a request the document allows was refused: {response.text}"
