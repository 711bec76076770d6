"""The API's errors: a kind and one clear sentence.

The kind says what went wrong in the protocol's own terms; only the HTTP edge (`web/`) turns it into a status
code, so the supervisor and the store never speak HTTP.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    QUEUE_FULL = "queue_full"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    STORAGE_FULL = "storage_full"

    @property
    def meaning(self) -> str:
        """What went wrong, as the API document says it."""
        return _MEANINGS[self]


_MEANINGS = {
    ErrorKind.BAD_REQUEST: "the request is malformed or a field is wrong",
    ErrorKind.UNAUTHORIZED: "no token, or a token that is nobody's",
    ErrorKind.FORBIDDEN: "a request a page of another site sent",
    ErrorKind.NOT_FOUND: "no such job for this user, or nothing at this path",
    ErrorKind.METHOD_NOT_ALLOWED: "a method this path does not answer",
    ErrorKind.CONFLICT: "an idempotency key already used for another command",
    ErrorKind.TOO_LARGE: "the request body is over the limit",
    ErrorKind.QUEUE_FULL: "too many of this user's jobs wait already",
    ErrorKind.RATE_LIMITED: "too many requests of this user in the last moments",
    ErrorKind.UNAVAILABLE: "the supervisor is restarting, or the server is shutting down",
    ErrorKind.STORAGE_FULL: "the job could not be recorded",
}


class ApiError(Exception):
    """An answer the API gives instead of a result."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after  # seconds after which asking again may succeed, where known

    def __repr__(self) -> str:
        return f"ApiError({self.kind!s}, {self.message!r})"

