"""Who is calling: the token a request carries, checked against the users file's SHA-256 hashes and the
token's expiry, or the user a verified client certificate names.

The file is re-read when it changes, so `workerctl users add` takes effect without a restart; if the new
version is broken, the last good one stays in force and the log says why. Tokens are compared by their hashes
with `hmac.compare_digest`, against every user, so the time taken says nothing about which user nearly matched.
"""

from __future__ import annotations

import hmac
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.store.users import UsersFileError, format_time, hash_token, load_users

log = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, users_file: Path) -> None:
        self.users_file = users_file
        self._users = load_users(users_file)
        self._version = self._current_version()

    def _current_version(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.users_file)
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _reload_if_changed(self) -> None:
        version = self._current_version()
        if version == self._version:
            return
        self._version = version
        try:
            self._users = load_users(self.users_file)
            log.info("reloaded the users file %s: %d users", self.users_file, len(self._users))
        except UsersFileError as error:
            log.error("keeping the previous users: %s", error)

    def user_for(self, token: str) -> str:
        """The user whose token this is; an UNAUTHORIZED ApiError if it is nobody's."""
        self._reload_if_changed()
        try:
            digest = hash_token(token)
        except UnicodeEncodeError:
            raise _unauthorized("invalid token") from None
        found = None
        for name, user in self._users.items():
            if hmac.compare_digest(digest, user.token_sha256):
                found = name
        if found is None:
            raise _unauthorized("invalid token")
        expires = self._users[found].expires
        if expires is not None and datetime.now(timezone.utc) >= expires:
            raise _unauthorized(f"the token expired at {format_time(expires)}: ask for a new one")
        return found

    def caller(self, certificate_name: str | None, body: dict[str, Any], authorization: str | None) -> str:
        """The user a request comes from: the one its verified client certificate names, or else the one whose
        token it carries. A token sent with a certificate must be the same user's."""
        if certificate_name is None:
            return self.user_for(token_from(body, authorization))
        self._reload_if_changed()
        if certificate_name not in self._users:
            raise _unauthorized(f"the client certificate names {certificate_name!r}, who is not a user here")
        if (authorization is not None or body.get("token") is not None) \
                and self.user_for(token_from(body, authorization)) != certificate_name:
            raise _unauthorized("the token is not for the user the client certificate names")
        return certificate_name


def _unauthorized(message: str) -> ApiError:
    return ApiError(ErrorKind.UNAUTHORIZED, message)


def token_from(body: dict[str, Any], authorization: str | None) -> str:
    """The caller's token, from the body's `token` or an `Authorization: Bearer` header."""
    header_token = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        header_token = value.strip()
    body_token = body.get("token")
    if body_token is not None and not isinstance(body_token, str):
        raise _unauthorized("invalid token")
    if header_token is not None and body_token is not None and header_token != body_token:
        raise _unauthorized("the token in the body and the one in the Authorization header differ")
    token = header_token if header_token is not None else body_token
    if not token:
        raise _unauthorized("missing token: send it as \"token\" in the body or as 'Authorization: Bearer <token>'")
    return token
