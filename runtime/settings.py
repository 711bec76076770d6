"""The server's settings, each declared once, with its type, default, help and check: the `serve` flags, its
TOML settings file, its help screen and the README's table are all made from these declarations.

Precedence: command-line flags, then the settings file (`serve --config FILE`), then the defaults. The defaults
serve the development material in `certs/` on 127.0.0.1:8443.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workerctl.dev_material import DEV_SERVER_CERT, DEV_SERVER_KEY, DEV_USERS
from workerctl.protocol.actions import HOST_NAME, HOST_NAME_RULE
from workerctl.protocol.sizes import format_size, parse_size

UNUSABLE_SETTINGS_EXIT = 78
"""EX_CONFIG: the exit status of a server process that cannot work with its settings; restarting it is useless."""


class SettingsError(ValueError):
    """A setting is wrong; the message says which and why in one sentence."""


class SettingsFileError(SettingsError):
    """The settings file is wrong: it cannot be read, is not TOML, or holds a setting that is not one or a value
    that will not do."""


def default_data_dir() -> Path:
    """/var/lib/workerctl for root (jobs, running as other users, must reach their working directories
    there, which they cannot under /root); the user's state directory otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/workerctl")
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "workerctl"


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


Check = Callable[[str, Any], None]
"""Raises SettingsError naming the setting (its flag name) if the value will not do."""


def _between(low: int, high: int) -> Check:
    def check(name: str, value: int) -> None:
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return check


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise SettingsError(f"{name} must be a positive number of seconds or days")


def _not_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise SettingsError(f"{name} must be zero or more seconds")


def _at_least(least: int) -> Check:
    def check(name: str, value: int) -> None:
        if value < least:
            raise SettingsError(f"{name} must be at least {least}, not {value}")
    return check


def _one_of(*choices: str) -> Check:
    def check(name: str, value: str) -> None:
        if value not in choices:
            raise SettingsError(f"{name} must be {', '.join(f'{choice!r}' for choice in choices[:-1])} or "
                                f"{choices[-1]!r}, not {value!r}")
    return check


def _host_name(name: str, value: str) -> None:
    if not HOST_NAME.fullmatch(value):
        raise SettingsError(f"{name} must be {HOST_NAME_RULE} characters, not {value!r}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(name: str, value: str) -> None:
    if value.upper() not in LOG_LEVELS:
        raise SettingsError(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")


def _setting(default: Any, help: str, check: Check | None = None, shown_default: str | None = None,
             metavar: str | None = None, parse: Callable[[Any], Any] | None = None,
             aliases: tuple[str, ...] = (), choices: tuple[str, ...] = ()) -> Any:
    """A setting's declaration; with `choices` and no `check`, the value must be one of them."""
    if choices and check is None:
        check = _one_of(*choices)
    return dataclasses.field(default=default, metadata={
        "help": help, "check": check, "shown_default": shown_default, "metavar": metavar, "parse": parse,
        "aliases": aliases, "choices": choices})


def _size_setting(default: int, help: str, shown_default: str | None = None) -> Any:
    return _setting(default, help, _at_least(1), shown_default or format_size(default), "SIZE", parse_size)


@dataclass(frozen=True)
class ServerSettings:
    host: str = _setting("127.0.0.1", "the address to listen on", metavar="ADDRESS")
    port: int = _setting(8443, "the port to listen on; 0 takes any free port and logs it",
                         _between(0, 65535), metavar="PORT")
    cert: Path = _setting(DEV_SERVER_CERT, "the server's certificate chain (PEM)", shown_default="certs/server.pem",
                          metavar="FILE")
    key: Path = _setting(DEV_SERVER_KEY, "the server certificate's private key (PEM)",
                         shown_default="certs/server-key.pem", metavar="FILE")
    users: Path = _setting(DEV_USERS, "the users file (re-read when it changes)",
                           shown_default="certs/dev-users.toml", metavar="FILE")
    client_ca: Path | None = _setting(None, "a CA certificate (PEM): a client certificate it signed whose common name "
                                      "is a user authenticates that user without a token", shown_default="none",
                                      metavar="FILE")
    require_client_cert: bool = _setting(False, "refuse connections without a client certificate signed by "
                                         "--client-ca", shown_default="off")
    data_dir: Path = _setting(
        default_data_dir(), "job records, output and working directories; jobs must be able to reach it",
        shown_default="/var/lib/workerctl as root, else $XDG_STATE_HOME/workerctl or ~/.local/state/workerctl",
        metavar="DIR")
    handshake_timeout: float = _setting(10.0, "seconds a client has to finish its TLS handshake", _positive,
                                        metavar="SECONDS")
    max_connections_per_client: int = _setting(64, "connections one client address may hold open at once",
                                               _at_least(1), metavar="N")
    unavailable_wait: float = _setting(10.0, "seconds a request waits for the supervisor while it restarts after a "
                                       "crash, before it is answered 503", _not_negative, metavar="SECONDS")
    rate_limit: float = _setting(200.0, "requests per second one user may send (bursts of twice as many); past it, "
                                 "429 with Retry-After; 0: no limit", _not_negative, metavar="N")
    audit_log: Path | None = _setting(None, "a file to append one JSON line to per request that starts or stops a job "
                                      "or is refused", shown_default="none", metavar="FILE")
    job_timeout: float = _setting(60.0, "seconds a job may run before the server ends it, unless its start asks "
                                  "for less or (up to --max-job-timeout) more", _positive, metavar="SECONDS")
    max_job_timeout: float | None = _setting(None, "the most seconds a start may ask for", _positive,
                                             shown_default="--job-timeout", metavar="SECONDS")
    kill_grace: float = _setting(5.0, "seconds between SIGTERM and SIGKILL when a job is ended", _not_negative,
                                 metavar="SECONDS")
    max_jobs: int = _setting(1024, "jobs running at once; more wait in `created`", _at_least(1), metavar="N")
    max_jobs_per_user: int = _setting(128, "jobs of one user running at once", _at_least(1), metavar="N")
    max_queued_per_user: int = _setting(10_000, "jobs of one user waiting in `created`; more starts are refused "
                                        "with 429", _at_least(1), metavar="N")
    max_output_bytes: int = _setting(2 * 1024 * 1024, "output kept whole per job; past it, its head and tail",
                                     _at_least(1024 * 1024), metavar="BYTES")
    job_memory: int = _size_setting(1024**3, "memory one job may use, swap and its /tmp included; a start may ask "
                                    "for less")
    job_cpus: float = _setting(1.0, "cores of CPU time one job may use at once; a start may ask for less",
                               _positive, metavar="N")
    job_processes: int = _setting(1024, "processes and threads one job may have at once", _at_least(1),
                                  metavar="N", aliases=("max_job_processes",))
    home_size: int = _size_setting(1024**3, "the size of each user's home, kept between their jobs (where the host "
                                   "can mount one file system per home)")
    user_memory: int = _size_setting(host_memory_bytes() // 2, "memory one user's jobs may use together",
                                     shown_default="half the host's memory")
    user_cpus: float = _setting(float(os.cpu_count() or 1), "cores of CPU time one user's jobs may use together",
                                _positive, shown_default="all the host's cores", metavar="N")
    user_processes: int = _setting(4096, "processes and threads one user's jobs may have together",
                                   _at_least(1), metavar="N")
    job_user: str | None = _setting(None, "`dynamic`: each job runs as a user ID of its own; or a user name",
                                    shown_default="dynamic as root, else the server's own user", metavar="USER")
    containment: str = _setting("auto", "`cgroup` (a cgroup v2 per job), `process` (psutil process trees), or "
                                "`auto`: cgroup where possible", choices=("auto", "cgroup", "process"),
                                metavar="KIND")
    sandbox: str = _setting("auto", "`on`: each job in namespaces of its own (its processes, a read-only root, /tmp, "
                            "IPC, host name; see --network), or refuse to start; `off`; `auto`: on as root (which "
                            "refuses to start without it), off with a warning otherwise",
                            choices=("auto", "on", "off"), metavar="MODE")
    network: str = _setting("none", "with the sandbox, `none`: a job has only a loopback of its own; `host`: the "
                            "host's network", choices=("none", "host"), metavar="MODE")
    seccomp: str = _setting("default", "`default`: jobs may not make the system calls that widen what they can reach "
                            "of the kernel (namespaces, mounts, keyrings, BPF, io_uring...); `off`",
                            choices=("default", "off"), metavar="MODE")
    retention_days: float = _setting(7.0, "ended jobs are deleted with their output after this many days",
                                     _positive, metavar="DAYS")
    retention_jobs: int = _setting(1000, "ended jobs kept per user, newest first", _at_least(1), metavar="N")
    cluster: str | None = _setting(None, "a redis:// or rediss:// URL: serve as a front end of the cluster whose jobs "
                                   "and hosts that Redis holds (docs/cluster.md)", shown_default="none: one host",
                                   metavar="URL")
    name: str | None = _setting(None, f"an agent's host name in its cluster ({HOST_NAME_RULE}; `workerctl agent` "
                                "only)", _host_name, shown_default="none", metavar="NAME")
    host_timeout: float = _setting(10.0, "seconds after an agent's last sign of life when its running jobs end in "
                                   "`error` as lost", _positive, metavar="SECONDS")
    log_level: str = _setting("INFO", "how much the log says: DEBUG, INFO, WARNING, ERROR or CRITICAL", _log_level,
                              metavar="LEVEL", choices=LOG_LEVELS)

    def validated(self) -> ServerSettings:
        for setting in SETTINGS:
            if setting.check is not None and getattr(self, setting.name) is not None:
                setting.check(setting.flag_name, getattr(self, setting.name))
        if self.require_client_cert and self.client_ca is None:
            raise SettingsError("require-client-cert needs --client-ca, the CA that signs the client certificates")
        if self.max_job_timeout is not None and self.max_job_timeout < self.job_timeout:
            raise SettingsError(f"max-job-timeout must be at least job-timeout ({self.job_timeout:g})")
        return self

    @property
    def longest_job_timeout(self) -> float:
        """The most seconds a start may ask for."""
        return self.job_timeout if self.max_job_timeout is None else self.max_job_timeout


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the flags, the settings file, help and the README see it."""

    name: str
    kind: type
    default: Any
    help: str
    check: Check | None
    shown_default: str | None
    metavar: str | None

    parse: Callable[[Any], Any] | None = None
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # where the value is one of a few words: those

    @property
    def flag_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def shown(self) -> str:
        """The default as help and the README show it."""
        if self.shown_default is not None:
            return self.shown_default
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def convert(self, value: Any) -> Any:
        """A flag's or the settings file's value as this setting's type; SettingsError if it does not fit."""
        try:
            if isinstance(value, bool) != (self.kind is bool):
                raise TypeError
            if self.kind is bool:
                return value
            if self.parse is not None:
                return self.parse(value)
            if self.kind is Path:
                return Path(str(value)).expanduser()
            if self.kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise TypeError
                return int(value)
            if self.kind is float:
                return float(value)
            return str(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{self.flag_name} cannot be {value!r}") from None


def _declared() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(ServerSettings)
    return tuple(
        Setting(field.name, next(kind for kind in typing.get_args(hints[field.name]) or (hints[field.name],)
                                 if kind is not type(None)),
                field.default, field.metadata["help"], field.metadata["check"], field.metadata["shown_default"],
                field.metadata["metavar"], field.metadata["parse"], field.metadata["aliases"],
                field.metadata["choices"])
        for field in dataclasses.fields(ServerSettings))


SETTINGS = _declared()
_BY_NAME = {name: setting for setting in SETTINGS for name in (setting.name, *setting.aliases)}

FRONT_END_SETTINGS = ("host", "port", "cert", "key", "users", "client_ca", "require_client_cert", "handshake_timeout",
                      "max_connections_per_client", "unavailable_wait", "rate_limit", "audit_log")
"""The settings only a front end uses: an agent has no such flags, and ignores them in a settings file."""

SUPERVISOR_SETTINGS = ("data_dir", "job_timeout", "max_job_timeout", "max_jobs", "max_jobs_per_user",
                       "max_queued_per_user", "max_output_bytes", "job_memory", "job_cpus", "job_processes",
                       "home_size", "user_memory", "user_cpus", "user_processes", "job_user", "containment", "sandbox",
                       "network", "seccomp", "retention_days", "retention_jobs", "name", "host_timeout")
"""The settings only a supervisor or its agent uses: a cluster's front end ignores them (each agent has its own)."""


def changed_flags(settings: ServerSettings, names: tuple[str, ...]) -> list[str]:
    """The flags of these settings that are not at their defaults, for a log line saying they are ignored."""
    defaults = ServerSettings()
    return [f"--{_BY_NAME[name].flag_name}" for name in names if getattr(settings, name) != getattr(defaults, name)]


def load_settings(config_file: Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from the defaults, overridden by `config_file`, overridden by the flags that are not None.
    SettingsFileError for what is wrong with the file alone, SettingsError for the rest."""
    values = {} if config_file is None else _read_settings_file(config_file)
    for name, value in flags.items():
        if value is not None:
            values[_BY_NAME[name].name] = _BY_NAME[name].convert(value)
    return replace(ServerSettings(), **values).validated()


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The settings a settings file gives, each converted and checked on its own."""
    try:
        with open(path, "rb") as file:
            from_file = tomllib.load(file)
    except OSError as error:
        raise SettingsFileError(f"cannot read settings file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsFileError(f"settings file {path} is not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    for key, value in from_file.items():
        setting = _BY_NAME.get(key.replace("-", "_"))
        if setting is None:
            raise SettingsFileError(f"settings file {path} has an unknown setting {key!r}")
        try:
            values[setting.name] = setting.convert(value)
            if setting.check is not None and values[setting.name] is not None:
                setting.check(setting.flag_name, values[setting.name])
        except SettingsError as error:
            raise SettingsFileError(f"settings file {path}: {error}") from None
    return values


def markdown_table() -> str:
    """The README's table of settings."""
    rows = ["| flag | default | |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        also = "".join(f" (or `--{alias.replace('_', '-')}`)" for alias in setting.aliases)
        rows.append(f"| `--{setting.flag_name}`{also} | {setting.shown} | {setting.help} |")
    return "\n".join(rows)
