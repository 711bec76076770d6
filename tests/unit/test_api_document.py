"""The API document: docs/openapi.json is what the code makes now, it is valid OpenAPI 3.1, and it describes every
action, field, answer and error of the protocol."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate
from workerctl.protocol.actions import ACTIONS, answer_type, api_fields
from workerctl.protocol.jobs import JobStatus
from workerctl.web.answers import HTTP_STATUS
from workerctl.web.api_document import SERVER_ERRORS, document_text

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_document_in_docs_is_the_one_the_code_makes():
    assert DOCUMENT.read_text() == document_text(), \
        "docs/openapi.json is out of date: run `.venv/bin/python -m workerctl.web.api_document > docs/openapi.json`"


def test_the_document_is_valid_openapi_3_1():
    document = json.loads(document_text())
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_action_field_answer_and_error_is_described():
    document = json.loads(document_text())
    schemas = document["components"]["schemas"]
    operation = document["paths"]["/"]["post"]
    mapping = operation["requestBody"]["content"]["application/json"]["schema"]["discriminator"]["mapping"]
    assert set(mapping) == {action.value for action in ACTIONS}
    answers = operation["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]
    for action, request in ACTIONS.items():
        schema = schemas[request.__name__]
        assert schema["properties"]["action"] == {"const": action.value}
        assert set(schema["properties"]) == {"action", "token", *(field.name for field in api_fields(request))}
        assert schema["additionalProperties"] is False
        if answer_type(request) is not None:
            assert {"$ref": f"#/components/schemas/{answer_type(request).__name__}"} in answers
    assert schemas["JobStatus"]["enum"] == [status.value for status in JobStatus]
    documented = {int(status) for status in operation["responses"]} - {200}
    assert documented == (set(HTTP_STATUS.values()) - {405}) | set(SERVER_ERRORS)
    assert "Retry-After" in operation["responses"]["429"]["headers"]
