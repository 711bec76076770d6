"""The API's errors: a kind and one clear sentence.

The kind says what went wrong in the protocol's own terms; only the HTTP edge (`web/`) turns it into a status
code, so the supervisor and the store never speak HTTP.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"  # the request is malformed or a field is wrong
    UNAUTHORIZED = "unauthorized"  # no token, or a token that is nobody's
    NOT_FOUND = "not_found"  # no such job for this user, or nothing at this path
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"  # an idempotency key already used for another command
    TOO_LARGE = "too_large"  # the request body is over the limit
    QUEUE_FULL = "queue_full"  # too many of this user's jobs wait already
    RATE_LIMITED = "rate_limited"  # too many requests of this user in the last moments
    UNAVAILABLE = "unavailable"  # the supervisor is restarting, or the server is shutting down
    STORAGE_FULL = "storage_full"  # the job could not be recorded


class ApiError(Exception):
    """An answer the API gives instead of a result."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after  # seconds after which asking again may succeed, where known

    def __repr__(self) -> str:
        return f"ApiError({self.kind!s}, {self.message!r})"

