"""How the front end answers: JSON always, errors included, `{"error": "one clear sentence"}` with the status its
kind maps to here, the one place an error kind becomes an HTTP status. Tornado's HTML error pages and
tracebacks never reach a client.
"""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any, ClassVar

import tornado.web
from workerctl.protocol.errors import ApiError, ErrorKind

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.QUEUE_FULL: 429,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.STORAGE_FULL: 507,
}
"""The one place an error kind becomes an HTTP status."""


class JsonHandler(tornado.web.RequestHandler):
    """A handler whose every answer is JSON, and which does not say what server it is."""

    ALLOWED_METHODS: ClassVar[str] = "POST"
    """What the Allow header of a 405 names."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # no need to tell the world which server and version this is
        self.set_header("X-Content-Type-Options", "nosniff")  # JSON is never to be taken for a page or a script

    def _finish_json(self, answer: dict[str, Any]) -> None:
        self._finish_encoded(json.dumps(answer, ensure_ascii=False).encode())

    def _finish_encoded(self, answer: bytes) -> None:
        """Answer with a JSON text already encoded (as UTF-8)."""
        self.set_header("Content-Type", "application/json")
        self.finish(answer + b"\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            status_code, message = HTTP_STATUS[error.kind], error.message
        elif status_code >= 500:
            message = "internal server error; the server's log has the details"
        else:
            message = HTTPStatus(status_code).phrase.lower() if status_code in HTTPStatus._value2member_map_ \
                else "the request was refused"
        self.set_status(status_code)
        if status_code == 405:
            self.set_header("Allow", self.ALLOWED_METHODS)
        if isinstance(error, ApiError) and error.retry_after is not None:
            self.set_header("Retry-After", str(math.ceil(error.retry_after)))
        self._finish_json({"error": message})

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError):
            return  # an answer, not a fault
        super().log_exception(typ, value, tb)
