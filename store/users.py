"""The users file: who may use the server, as one TOML table per user holding only the SHA-256 of their token
and, if it has one, when that token expires.

    [users.alice]
    token_sha256 = "<64 lowercase hex characters>"
    expires = 2027-03-01T12:00:00Z

Tokens are 256 random bits, so their unsalted hashes cannot be reversed; the file never holds a token, and the
token add_user or rotate_token returns is shown once. The file is written atomically and kept at mode 0600.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workerctl.store.atomic_write import write_atomically

USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
_BARE_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]+")  # a TOML bare key; other names (with a "") need quotes
_USER_KEYS = frozenset({"token_sha256", "expires"})

DEFAULT_HEADER = (
    "# workerctl users: one [users.NAME] table per user, holding only the SHA-256 of that user's token.\n"
    "# Add a user with `workerctl users add NAME --users FILE`; it prints the token once, and nothing stores it.\n"
)


class UsersFileError(Exception):
    """The users file is missing, unreadable or malformed, or a change to it makes no sense (the subclasses
    below: the file itself is fine)."""


class UserNameError(UsersFileError):
    """The name given for a user is not one the users file can hold."""


class UserConflict(UsersFileError):
    """The user to add is in the users file already, or the user to change is not."""


@dataclass(frozen=True)
class User:
    """One user's entry: their token's SHA-256 and when the token stops working (None: never)."""

    token_sha256: str
    expires: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token's UTF-8 bytes: what the users file stores for it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_users(path: Path) -> dict[str, User]:
    """Map each user's name to their entry, checking the whole file; UsersFileError if anything is off."""
    return _parse(_read(path), path)


def list_users(path: Path) -> list[tuple[str, User]]:
    """The users and their entries, sorted by name."""
    return sorted(load_users(path).items())


def add_user(path: Path, name: str, expires: datetime | None = None) -> str:
    """Add a user with a fresh token, valid until `expires` if given, and return the token; create the file if
    it is missing.

    The new table is appended, so the existing text and its comments stay as they were.
    """
    path = Path(path)
    _check_name(name, path, UserNameError)
    text = _read(path) if path.exists() else ""
    if not text.strip():  # a missing or empty file: start one
        text = DEFAULT_HEADER + "\n[users]\n"
    if name in _parse(text, path):
        raise UserConflict(f"there is already a user {name!r} in the users file {path}")
    token = new_token()
    user = User(hash_token(token), _whole_seconds(expires))
    new_text = text + ("" if text.endswith("\n") else "\n") + "\n" + _user_table(name, user)
    # Appending a table is valid TOML unless the file wrote its users as inline tables; parse to be sure.
    try:
        appended = _parse(new_text, path).get(name) == user
    except UsersFileError:
        appended = False
    if not appended:
        raise UsersFileError(
            f"cannot append user {name!r} to the users file {path}; write its users as [users.NAME] tables"
        )
    _write_atomically(path, new_text)
    return token


def remove_user(path: Path, name: str) -> None:
    """Remove a user, rewriting the file with the remaining users and the file's leading comment."""
    text, users = _read_user(path, name)
    del users[name]
    _rewrite(path, text, users)


def rotate_token(path: Path, name: str, expires: datetime | None = None) -> str:
    """Give a user a fresh token and return it; their old token stops working as soon as the server sees the
    file change. The new token expires at `expires` if given, and otherwise when the old one would have."""
    text, users = _read_user(path, name)
    token = new_token()
    users[name] = User(hash_token(token), _whole_seconds(expires) if expires else users[name].expires)
    _rewrite(path, text, users)
    return token


def _read_user(path: Path, name: str) -> tuple[str, dict[str, User]]:
    _check_name(name, path, UserNameError)
    text = _read(path)
    users = _parse(text, path)
    if name not in users:
        raise UserConflict(f"there is no user {name!r} in the users file {path}")
    return text, users


def _rewrite(path: Path, text: str, users: dict[str, User]) -> None:
    """Replace the file with `users`, keeping the leading comment of its current `text`."""
    new_text = (_leading_comment(text) or DEFAULT_HEADER) + "\n[users]\n"
    for name, user in users.items():
        new_text += "\n" + _user_table(name, user)
    _write_atomically(path, new_text)


def _whole_seconds(moment: datetime | None) -> datetime | None:
    """`moment` in UTC to the second: what the file can hold, and all a token's lifetime needs."""
    return moment.astimezone(timezone.utc).replace(microsecond=0) if moment else None


def _read(path: Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsersFileError(f"the users file {path} does not exist") from None
    except OSError as error:
        raise UsersFileError(f"cannot read the users file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsersFileError(f"the users file {path} is not valid UTF-8 text") from None


def _parse(text: str, path: Path) -> dict[str, User]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsersFileError(f"the users file {path} is not valid TOML: {error}") from None
    unknown = sorted(document.keys() - {"users"})
    if unknown:
        raise UsersFileError(f"the users file {path} has a top-level key {unknown[0]!r} besides [users]")
    if "users" not in document:
        raise UsersFileError(f"the users file {path} has no [users] table")
    users = document["users"]
    if not isinstance(users, dict):
        raise UsersFileError(f"the users file {path} defines `users` as a value, not as a [users] table")

    names_by_hash: dict[str, str] = {}
    users_by_name: dict[str, User] = {}
    for name, entry in users.items():
        _check_name(name, path)
        if not isinstance(entry, dict):
            raise UsersFileError(f"user {name!r} in the users file {path} is a value, not a [users.NAME] table")
        unknown = sorted(entry.keys() - _USER_KEYS)
        if unknown:
            raise UsersFileError(f"user {name!r} in the users file {path} has an unknown key {unknown[0]!r}")
        token_sha256 = entry.get("token_sha256")
        if token_sha256 is None:
            raise UsersFileError(f"user {name!r} in the users file {path} has no token_sha256")
        if not isinstance(token_sha256, str) or not _HASH_PATTERN.fullmatch(token_sha256):
            raise UsersFileError(
                f"user {name!r} in the users file {path} has a token_sha256 that is not 64 lowercase hex characters"
            )
        if token_sha256 in names_by_hash:
            raise UsersFileError(
                f"users {names_by_hash[token_sha256]!r} and {name!r} in the users file {path} have the same token"
            )
        names_by_hash[token_sha256] = name
        expires = entry.get("expires")
        if expires is not None and not (isinstance(expires, datetime) and expires.tzinfo is not None):
            raise UsersFileError(f"user {name!r} in the users file {path} has an expires that is not a date and "
                                 "time with its offset, such as 2027-03-01T12:00:00Z")
        users_by_name[name] = User(token_sha256, expires)
    return users_by_name


def _check_name(name: str, path: Path, error: type[UsersFileError] = UsersFileError) -> None:
    """`error` (the file's own fault unless said otherwise) if `name` is not one the users file can hold."""
    if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name):
        raise error(
            f"the user name {name!r} is not valid for the users file {path}: use 1 to 64 letters, digits, '_', '.'"
            " or '-', starting with a letter or digit"
        )


def _user_table(name: str, user: User) -> str:
    key = name if _BARE_KEY_PATTERN.fullmatch(name) else f'"{name}"'  # a valid name never needs escaping
    table = f'[users.{key}]\ntoken_sha256 = "{user.token_sha256}"\n'
    if user.expires:
        table += f"expires = {format_time(user.expires)}\n"
    return table


def format_time(moment: datetime) -> str:
    """A moment as TOML and ISO 8601 write it, in UTC: 2027-03-01T12:00:00Z."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    """Replace the users file with `text`, at mode 0600."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode("utf-8"))
    except OSError as error:
        raise UsersFileError(f"cannot write the users file {path}: {error.strerror or error}") from None
