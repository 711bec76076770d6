"""The server's settings, each declared once as a field of `ServerSettings`, the way the protocol declares its
fields (workerctl.protocol.fields): its type and constraints, the rule a value must meet, its help, and what only a
flag needs (`flag`: the word for its value, how help shows its default, a parser of what people write, former
names; and FRONT_END_ONLY or SUPERVISOR_ONLY). msgspec checks every value against its declaration, and the `serve`
and `agent` flags, the TOML settings file, the help screen, the README's table and the role lists are all made
from the declarations.

Precedence: command-line flags, then the settings file (`serve --config FILE`), then the defaults. The defaults
serve the development material in `certs/` on 127.0.0.1:8443.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta, Struct
from workerctl.dev_material import DEV_SERVER_CERT, DEV_SERVER_KEY, DEV_USERS
from workerctl.protocol.actions import HOST_NAME_RULE, HostName
from workerctl.protocol.fields import FieldInfo, described, fields_of, rule
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


def flag(metavar: str | None = None, *, shown_default: str | None = None, show: Callable[[Any], str] | None = None,
         parse: Callable[[Any], Any] | None = None, aliases: tuple[str, ...] = ()) -> Meta:
    """What a setting's flag needs beyond its rule and help, as extra metadata of its declaration: the word for its
    value in help; its default as help shows it, or the function that `show`s a value; the `parse` that turns what
    people write ("1G") into what msgspec checks; its former names."""
    given = {"metavar": metavar, "shown_default": shown_default, "show": show, "parse": parse, "aliases": aliases}
    return Meta(extra={key: value for key, value in given.items() if value})


_FRONT_END, _SUPERVISOR = "front end", "supervisor"
FRONT_END_ONLY = Meta(extra={"role": _FRONT_END})
"""Declares a setting only a front end uses: an agent has no such flag, and ignores it in a settings file."""
SUPERVISOR_ONLY = Meta(extra={"role": _SUPERVISOR})
"""Declares a setting only a supervisor or its agent uses: a cluster's front end ignores it (each agent has its
own)."""


def one_of(words: Any) -> Meta:
    """The rule of a setting that is one of the words of a Literal: "be 'on' or 'off'"."""
    *others, last = map(repr, get_args(words))
    return rule(f"be {', '.join(others)} or {last}")


# What each kind of setting accepts, the sentence that says so, and the word for its value in help.
Address = Annotated[str, rule("be a host name or an IP address"), flag("ADDRESS")]
Port = Annotated[int, rule("be a whole number from 0 to 65535", ge=0, le=65535), flag("PORT")]
File = Annotated[Path, rule("be a file's path"), flag("FILE")]
Directory = Annotated[Path, rule("be a directory's path"), flag("DIR")]
Switch = Annotated[bool, rule("be true or false"), flag(show=lambda on: "on" if on else "off")]
Seconds = Annotated[float, rule("be a positive number of seconds", gt=0), flag("SECONDS")]
SecondsOrZero = Annotated[float, rule("be zero or more seconds", ge=0), flag("SECONDS")]
Days = Annotated[float, rule("be a positive number of days", gt=0), flag("DAYS")]
Count = Annotated[int, rule("be a whole number, at least 1", ge=1), flag("N")]
Cores = Annotated[float, rule("be a positive number of cores", gt=0), flag("N")]
Size = Annotated[int, rule("be a size of 1 byte or more (bytes, or a number with K, M, G or T)", ge=1),
                 flag("SIZE", show=format_size, parse=parse_size)]
MIN_OUTPUT_BYTES = 1024 * 1024
OutputBytes = Annotated[int, rule(f"be a whole number of bytes, at least {MIN_OUTPUT_BYTES}", ge=MIN_OUTPUT_BYTES),
                        flag("BYTES")]
ContainmentKind = Literal["auto", "cgroup", "process"]
SandboxMode = Literal["auto", "on", "off"]
NetworkMode = Literal["none", "host"]
SeccompMode = Literal["default", "off"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class ServerSettings(Struct, frozen=True, kw_only=True, rename="kebab"):
    """What a server process runs with. Each field is a setting, named as its flag (`--max-jobs`) and its key in
    the settings file (`max-jobs`, or `max_jobs`)."""

    host: Annotated[Address, described("the address to listen on"), FRONT_END_ONLY] = "127.0.0.1"
    port: Annotated[Port, described("the port to listen on; 0 takes any free port and logs it"),
                    FRONT_END_ONLY] = 8443
    cert: Annotated[File, described("the server's certificate chain (PEM)"), flag(shown_default="certs/server.pem"),
                    FRONT_END_ONLY] = DEV_SERVER_CERT
    key: Annotated[File, described("the server certificate's private key (PEM)"),
                   flag(shown_default="certs/server-key.pem"), FRONT_END_ONLY] = DEV_SERVER_KEY
    users: Annotated[File, described("the users file (re-read when it changes)"),
                     flag(shown_default="certs/dev-users.toml"), FRONT_END_ONLY] = DEV_USERS
    client_ca: Annotated[File, described("a CA certificate (PEM): a client certificate it signed whose common name "
                                         "is a user authenticates that user without a token"),
                         flag(shown_default="none"), FRONT_END_ONLY] | None = None
    require_client_cert: Annotated[Switch, described("refuse connections without a client certificate signed by "
                                                     "--client-ca"), FRONT_END_ONLY] = False
    data_dir: Annotated[Directory, described("job records, output and working directories; jobs must be able to "
                                             "reach it"),
                        flag(shown_default="/var/lib/workerctl as root, else $XDG_STATE_HOME/workerctl or "
                                           "~/.local/state/workerctl"), SUPERVISOR_ONLY] = default_data_dir()
    handshake_timeout: Annotated[Seconds, described("seconds a client has to finish its TLS handshake"),
                                 FRONT_END_ONLY] = 10.0
    max_connections_per_client: Annotated[Count, described("connections one client address may hold open at once"),
                                          FRONT_END_ONLY] = 64
    unavailable_wait: Annotated[SecondsOrZero, described("seconds a request waits for the supervisor while it "
                                                         "restarts after a crash, before it is answered 503"),
                                FRONT_END_ONLY] = 10.0
    start_wait: Annotated[Seconds, described("seconds a start waits for the supervisor (a cluster's: a host) to take "
                                             "it before it is answered 503"), FRONT_END_ONLY] = 10.0
    rate_limit: Annotated[float, rule("be zero or more requests per second", ge=0),
                          described("requests per second one user may send (bursts of twice as many); past it, 429 "
                                    "with Retry-After; 0: no limit"), flag("N"), FRONT_END_ONLY] = 200.0
    audit_log: Annotated[File, described("a file to append one JSON line to per request that starts or stops a job "
                                         "or is refused"), flag(shown_default="none"), FRONT_END_ONLY] | None = None
    job_timeout: Annotated[Seconds, described("seconds a job may run before the server ends it, unless its start "
                                              "asks for less or (up to --max-job-timeout) more"),
                           SUPERVISOR_ONLY] = 60.0
    max_job_timeout: Annotated[Seconds, described("the most seconds a start may ask for"),
                               flag(shown_default="--job-timeout"), SUPERVISOR_ONLY] | None = None
    kill_grace: Annotated[SecondsOrZero, described("seconds between SIGTERM and SIGKILL when a job is ended")] = 5.0
    max_jobs: Annotated[Count, described("jobs running at once; more wait in `created`"), SUPERVISOR_ONLY] = 1024
    max_jobs_per_user: Annotated[Count, described("jobs of one user running at once"), SUPERVISOR_ONLY] = 128
    max_queued_per_user: Annotated[Count, described("jobs of one user waiting in `created`; more starts are refused "
                                                    "with 429"), SUPERVISOR_ONLY] = 10_000
    max_output_bytes: Annotated[OutputBytes, described("output kept whole per job; past it, its head and tail"),
                                SUPERVISOR_ONLY] = 2 * 1024 * 1024
    job_memory: Annotated[Size, described("memory one job may use, swap and its /tmp included; a start may ask for "
                                          "less"), SUPERVISOR_ONLY] = 1024**3
    job_cpus: Annotated[Cores, described("cores of CPU time one job may use at once; a start may ask for less"),
                        SUPERVISOR_ONLY] = 1.0
    job_processes: Annotated[Count, described("processes and threads one job may have at once"),
                             flag(aliases=("max_job_processes",)), SUPERVISOR_ONLY] = 1024
    home_size: Annotated[Size, described("the size of each user's home, kept between their jobs (where the host can "
                                         "mount one file system per home)"), SUPERVISOR_ONLY] = 1024**3
    user_memory: Annotated[Size, described("memory one user's jobs may use together"),
                           flag(shown_default="half the host's memory"), SUPERVISOR_ONLY] = host_memory_bytes() // 2
    user_cpus: Annotated[Cores, described("cores of CPU time one user's jobs may use together"),
                         flag(shown_default="all the host's cores"), SUPERVISOR_ONLY] = float(os.cpu_count() or 1)
    user_processes: Annotated[Count, described("processes and threads one user's jobs may have together"),
                              SUPERVISOR_ONLY] = 4096
    job_user: Annotated[str, rule("be `dynamic` or a user's name"),
                        described("`dynamic`: each job runs as a user ID of its own; or a user name"),
                        flag("USER", shown_default="dynamic as root, else the server's own user"),
                        SUPERVISOR_ONLY] | None = None
    containment: Annotated[ContainmentKind, one_of(ContainmentKind),
                           described("`cgroup` (a cgroup v2 per job), `process` (psutil process trees), or `auto`: "
                                     "cgroup where possible"), flag("KIND"), SUPERVISOR_ONLY] = "auto"
    sandbox: Annotated[SandboxMode, one_of(SandboxMode),
                       described("`on`: each job in namespaces of its own (its processes, a read-only root, /tmp, IPC, "
                                 "host name; see --network), or refuse to start; `off`; `auto`: on as root (which "
                                 "refuses to start without it), off with a warning otherwise"), flag("MODE"),
                       SUPERVISOR_ONLY] = "auto"
    network: Annotated[NetworkMode, one_of(NetworkMode),
                       described("with the sandbox, `none`: a job has only a loopback of its own; `host`: the host's "
                                 "network"), flag("MODE"), SUPERVISOR_ONLY] = "none"
    seccomp: Annotated[SeccompMode, one_of(SeccompMode),
                       described("`default`: jobs may not make the system calls that widen what they can reach of the "
                                 "kernel (namespaces, mounts, keyrings, BPF, io_uring...); `off`"), flag("MODE"),
                       SUPERVISOR_ONLY] = "default"
    retention_days: Annotated[Days, described("ended jobs are deleted with their output after this many days"),
                              SUPERVISOR_ONLY] = 7.0
    retention_jobs: Annotated[Count, described("ended jobs kept per user, newest first"), SUPERVISOR_ONLY] = 1000
    cluster: Annotated[str, rule("be a redis:// or rediss:// URL"),
                       described("a redis:// or rediss:// URL: serve as a front end of the cluster whose jobs and "
                                 "hosts that Redis holds (docs/cluster.md)"),
                       flag("URL", shown_default="none: one host")] | None = None
    name: Annotated[HostName, described(f"an agent's host name in its cluster ({HOST_NAME_RULE}; `workerctl agent` "
                                        "only)"), flag("NAME", shown_default="none"), SUPERVISOR_ONLY] | None = None
    host_timeout: Annotated[Seconds, described("seconds after an agent's last sign of life when its running jobs end "
                                               "in `error` as lost"), SUPERVISOR_ONLY] = 10.0
    live_restore: Annotated[Switch, described("keep running jobs running when the server stops, is upgraded or "
                                              "crashes, and have the next start on the same data directory take them "
                                              "back (each job's keeper holds its output and ends it at its time "
                                              "limit meanwhile; needs the sandbox)"), SUPERVISOR_ONLY] = False
    log_level: Annotated[LogLevel, one_of(LogLevel),
                         described("how much the log says: DEBUG, INFO, WARNING, ERROR or CRITICAL"),
                         flag("LEVEL", parse=str.upper)] = "INFO"

    def validated(self) -> ServerSettings:
        """These settings, if they agree with each other (each alone was checked as it was read)."""
        if self.require_client_cert and self.client_ca is None:
            raise SettingsError("require-client-cert needs --client-ca, the CA that signs the client certificates")
        if self.max_job_timeout is not None and self.max_job_timeout < self.job_timeout:
            raise SettingsError(f"max-job-timeout must be at least job-timeout ({self.job_timeout:g})")
        return self

    @property
    def keeper_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when a job's keeper ends the job itself: --kill-grace; for an
        agent's, at most a quarter of --host-timeout, so that it can end its jobs before the lease lapses."""
        return min(self.kill_grace, self.host_timeout / 4) if self.cluster and self.name else self.kill_grace

    @property
    def longest_job_timeout(self) -> float:
        """The most seconds a start may ask for."""
        return self.job_timeout if self.max_job_timeout is None else self.max_job_timeout


class Setting(NamedTuple):
    """One declared setting, as the flags, the settings file, help and the README see it."""

    name: str  # "max_jobs"
    flag_name: str  # "max-jobs"
    kind: type  # str, int, float, bool or Path
    help: str
    rule: str  # what a value must be: "be a whole number, at least 1"
    shown: str  # the default as help and the README show it
    metavar: str | None
    choices: tuple[str, ...]  # where the value is one of a few words: those
    aliases: tuple[str, ...]  # former names, still taken
    parse: Callable[[Any], Any] | None
    role: str | None  # the one role that uses it, or None for both

    def typed(self, value: Any) -> Any:
        """A flag's or the settings file's value as this setting's type, checked by msgspec against its
        declaration; SettingsError if it will not do."""
        try:
            parsed = value if self.parse is None else self.parse(value)
            settings = msgspec.convert({self.flag_name: parsed}, ServerSettings, strict=False, dec_hook=_path)
        except (msgspec.ValidationError, TypeError, ValueError):
            raise SettingsError(f"{self.flag_name} must {self.rule}, not {value!r}") from None
        return getattr(settings, self.name)


def _path(kind: type, value: Any) -> Path:
    """The one type of a setting that msgspec leaves to us: a path, given as text."""
    if kind is Path and isinstance(value, str):
        return Path(value).expanduser()
    raise TypeError


def _setting(field: FieldInfo, hint: Any) -> Setting:
    kind, choices = _kind(hint)
    extra = field.extra
    shown = extra.get("shown_default") or extra.get("show", _shown)(field.default)
    return Setting(field.attribute, field.name, kind, field.help, field.rule or "", shown, extra.get("metavar"),
                   choices, extra.get("aliases", ()), extra.get("parse"), extra.get("role"))


def _kind(hint: Any) -> tuple[type, tuple[str, ...]]:
    """The type of a setting's value (None aside), and the words it may be where it is one of a few."""
    if get_origin(hint) in (Union, UnionType):
        hint = next(kind for kind in get_args(hint) if kind is not NoneType)
    if get_origin(hint) is Literal:
        return str, get_args(hint)
    return hint, ()


def _shown(default: Any) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def _declared() -> tuple[Setting, ...]:
    hints = get_type_hints(ServerSettings)
    return tuple(_setting(field, hints[field.attribute]) for field in fields_of(ServerSettings))


SETTINGS = _declared()
_BY_NAME = {name: setting for setting in SETTINGS for name in (setting.name, *setting.aliases)}

FRONT_END_SETTINGS = tuple(setting.name for setting in SETTINGS if setting.role == _FRONT_END)
"""The settings only a front end uses: an agent has no such flags, and ignores them in a settings file."""

SUPERVISOR_SETTINGS = tuple(setting.name for setting in SETTINGS if setting.role == _SUPERVISOR)
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
            values[_BY_NAME[name].name] = _BY_NAME[name].typed(value)
    return ServerSettings(**values).validated()


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The settings a settings file gives, each typed and checked on its own."""
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
            values[setting.name] = setting.typed(value)
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
