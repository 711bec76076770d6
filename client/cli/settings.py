"""Where the client finds its server, its credentials (a token, a client certificate, or both) and its CA.

Each setting comes from the first place that has it: a command-line flag, an environment variable
(WORKERCTL_SERVER, WORKERCTL_TOKEN, WORKERCTL_TOKEN_FILE, WORKERCTL_CA, WORKERCTL_CERT, WORKERCTL_KEY), the
settings file (`--config FILE`, else WORKERCTL_CONFIG, else ~/.config/workerctl/config.toml), and last the
development defaults in `certs/`. A token can live in a file, so it stays out of crontabs and process lists.
With a client certificate the token is optional: the development token is then not sent.

    # ~/.config/workerctl/config.toml
    server = "https://worker.example.com:8443"
    token_file = "~/.config/workerctl/token"
    ca = "~/.config/workerctl/ca.pem"
    # or, instead of a token, a client certificate naming you, and its key
    cert = "~/.config/workerctl/alice.pem"
    key = "~/.config/workerctl/alice-key.pem"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from workerctl.cli.exit_status import CliError, ExitStatus
from workerctl.dev_material import DEV_CA, DEV_SERVER_URL, DEV_TOKEN_FILE

_FILE_KEYS = frozenset({"server", "token", "token_file", "ca", "cert", "key"})


class ClientSettings(NamedTuple):  # not a dataclass: defining one would cost every command a millisecond
    server: str
    token: str | None  # None: the client certificate alone says who the caller is
    ca: Path
    cert: Path | None = None
    key: Path | None = None  # None with a cert: the key is in the cert's file


def default_config_file() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "workerctl" / "config.toml"


def _config_error(message: str) -> CliError:
    return CliError(ExitStatus.CONFIG, message)


def _read_config(flag: str | None) -> dict[str, Any]:
    explicit = flag or os.environ.get("WORKERCTL_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_file()
    try:
        with open(path, "rb") as file:
            import tomllib  # here: most command lines have no settings file to read

            try:
                values = tomllib.load(file)
            except tomllib.TOMLDecodeError as error:
                raise _config_error(f"settings file {path} is not valid TOML: {error}") from None
    except FileNotFoundError:
        if explicit:
            raise _config_error(f"settings file {path} does not exist") from None
        return {}
    except OSError as error:
        raise _config_error(f"cannot read settings file {path}: {error.strerror}") from None
    unknown = set(values) - _FILE_KEYS
    if unknown:
        raise _config_error(f"settings file {path} has unknown settings: {', '.join(sorted(unknown))}")
    for key, value in values.items():
        if not isinstance(value, str) or not value:
            raise _config_error(f"{key} in settings file {path} must be a non-empty string")
    return values


def _read_token_file(path: str) -> str:
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as error:
        raise _config_error(f"cannot read token file {path}: {error.strerror}") from None
    if not token:
        raise _config_error(f"token file {path} is empty")
    return token


def _first(*candidates: str | None) -> str | None:
    return next((candidate for candidate in candidates if candidate), None)


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser() if text else None


def resolve(server: str | None = None, token: str | None = None, token_file: str | None = None,
            ca: str | None = None, config: str | None = None, cert: str | None = None,
            key: str | None = None) -> ClientSettings:
    env = os.environ
    from_file = _read_config(config)
    chosen_server = _first(server, env.get("WORKERCTL_SERVER"), from_file.get("server")) or DEV_SERVER_URL
    chosen_cert = _path(_first(cert, env.get("WORKERCTL_CERT"), from_file.get("cert")))
    chosen_key = _path(_first(key, env.get("WORKERCTL_KEY"), from_file.get("key")))
    if chosen_key is not None and chosen_cert is None:
        raise CliError(ExitStatus.USAGE, "a client key needs its certificate: give --cert FILE as well")
    # A token beats a token file at the same level; a higher level beats both.
    chosen_token = None
    for direct, indirect in ((token, token_file),
                             (env.get("WORKERCTL_TOKEN"), env.get("WORKERCTL_TOKEN_FILE")),
                             (from_file.get("token"), from_file.get("token_file")),
                             (None, None if chosen_cert else str(DEV_TOKEN_FILE))):
        if direct or indirect:
            chosen_token = direct or _read_token_file(indirect)  # type: ignore[arg-type]
            break
    chosen_ca = Path(_first(ca, env.get("WORKERCTL_CA"), from_file.get("ca")) or DEV_CA).expanduser()
    parts = urlsplit(chosen_server)
    if parts.scheme != "https" or not parts.hostname:
        raise CliError(ExitStatus.USAGE, f"the server must be an https:// URL, not {chosen_server!r}")
    return ClientSettings(chosen_server, chosen_token, chosen_ca, chosen_cert, chosen_key)
