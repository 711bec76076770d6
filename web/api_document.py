"""`GET /openapi.json`: the API's OpenAPI document, as the protocol describes it with this front end's HTTP
statuses, made once and served to anyone (it says nothing the README does not).

Run as a module, it prints the document; docs/openapi.json is made so:
`python -m workerctl.web.api_document > docs/openapi.json`.
"""

from __future__ import annotations

import functools
import json
import sys

from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.openapi import api_document
from workerctl.web.answers import HTTP_STATUS, JsonHandler

SERVER_ERRORS = {400: "the request is not valid HTTP/1.1", 431: "the request's headers are too large"}
"""What the HTTP server answers on its own, before any handler: web/connections.py."""


@functools.cache
def document_text() -> str:
    return json.dumps(api_document(HTTP_STATUS, SERVER_ERRORS), indent=2, ensure_ascii=False) + "\n"


class DocumentHandler(JsonHandler):
    ALLOWED_METHODS = "GET"

    def prepare(self) -> None:
        if self.request.method != "GET":
            raise ApiError(ErrorKind.METHOD_NOT_ALLOWED, "only GET is allowed here")

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(document_text())


if __name__ == "__main__":
    sys.stdout.write(document_text())
