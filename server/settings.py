"""The server's settings: defaults, the optional TOML file, and the checks that turn a bad value into one clear
sentence before anything starts.

Precedence: command-line flags, then the settings file (`serve --config FILE`), then the defaults below. The
defaults serve the development material in `certs/` on 127.0.0.1:8443.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from workerctl.dev_material import DEV_SERVER_CERT, DEV_SERVER_KEY, DEV_USERS


def default_data_dir() -> Path:
    """/var/lib/workerctl for root (jobs, running as other users, must reach their working directories
    there, which they cannot under /root); the user's state directory otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/workerctl")
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "workerctl"


UNUSABLE_SETTINGS_EXIT = 78
"""EX_CONFIG: the exit status of a server process that cannot work with its settings; restarting it is useless."""


class SettingsError(ValueError):
    """A setting is wrong; the message says which and why in one sentence."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8443
    cert: Path = DEV_SERVER_CERT
    key: Path = DEV_SERVER_KEY
    users: Path = DEV_USERS
    data_dir: Path = default_data_dir()
    job_timeout: float = 60.0  # seconds a job may run before the server ends it
    kill_grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    max_jobs: int = 1024  # jobs running at once; more wait in `created`
    max_jobs_per_user: int = 128  # jobs of one user running at once
    max_queued_per_user: int = 10_000  # jobs of one user waiting in `created`; more are refused with 429
    max_output_bytes: int = 2 * 1024 * 1024  # output kept whole per job; past it, the head and the tail
    max_job_processes: int = 1024  # processes and threads of one job, where each job has a user of its own
    job_user: str | None = None  # "dynamic" (an account per job), or a user name; default: dynamic under root
    containment: str = "auto"  # "auto", "cgroup" or "process"
    retention_days: float = 7.0  # final jobs older than this are deleted with their output
    retention_jobs: int = 1000  # final jobs kept per user, newest first
    log_level: str = "INFO"

    def validated(self) -> ServerSettings:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be between 0 and 65535, not {self.port}")
        for name in ("job_timeout", "retention_days"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name.replace('_', '-')} must be a positive number of seconds or days")
        if not self.kill_grace >= 0:
            raise SettingsError("kill-grace must be zero or more seconds")
        for name in ("max_jobs", "max_jobs_per_user", "max_queued_per_user", "max_job_processes",
                     "retention_jobs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_output_bytes < 1024 * 1024:
            raise SettingsError("max-output-bytes must be at least 1 MiB (1048576)")
        if self.containment not in ("auto", "cgroup", "process"):
            raise SettingsError('containment must be "auto", "cgroup" or "process"')
        return self


_FIELD_TYPES = {field.name: field.type for field in fields(ServerSettings)}


def _convert(name: str, value: Any) -> Any:
    """Coerce a flag or file value to the setting's type; SettingsError if it does not fit."""
    kind = _FIELD_TYPES[name]
    try:
        if isinstance(value, bool):
            raise TypeError
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind == "float":
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name.replace('_', '-')} cannot be {value!r}") from None


def load_settings(config_file: Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from the defaults, overridden by `config_file`, overridden by the flags that are not None."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as file:
                from_file = tomllib.load(file)
        except OSError as error:
            raise SettingsError(f"cannot read settings file {config_file}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"settings file {config_file} is not valid TOML: {error}") from None
        for key, value in from_file.items():
            name = key.replace("-", "_")
            if name not in _FIELD_TYPES:
                raise SettingsError(f"settings file {config_file} has an unknown setting {key!r}")
            values[name] = _convert(name, value)
    for name, value in flags.items():
        if value is not None:
            values[name] = _convert(name, value)
    return replace(ServerSettings(), **values).validated()
