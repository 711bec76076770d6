"""Who is calling: a token checked against the users file's SHA-256 hashes.

The file is re-read when it changes, so `workerctl users add` takes effect without a restart; if the new
version is broken, the last good one stays in force and the log says why. Tokens are compared by their hashes
with `hmac.compare_digest`, against every user, so the time taken says nothing about which user nearly matched.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from workerctl.protocol import Unauthorized
from workerctl.store.users import UsersFileError, hash_token, load_users

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
        """The user whose token this is; Unauthorized if it is nobody's."""
        self._reload_if_changed()
        try:
            digest = hash_token(token)
        except UnicodeEncodeError:
            raise Unauthorized("invalid token") from None
        found = None
        for name, expected in self._users.items():
            if hmac.compare_digest(digest, expected):
                found = name
        if found is None:
            raise Unauthorized("invalid token")
        return found
