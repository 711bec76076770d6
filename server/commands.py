"""The commands that run on the server's host: serve, users and certs, as rows of the command table.

Declaring them imports little; what each runs is imported when it runs, so the job commands stay fast.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from workerctl.cli.exit_status import CliError, ExitStatus
from workerctl.cli.table import PROGRAM, Argument, Command, Option, usage_error
from workerctl.dev_material import DEV_USERS
from workerctl.runtime.settings import FRONT_END_SETTINGS, SETTINGS, ServerSettings


def serve(config: str | None, **flags: str | bool | None) -> ExitStatus:
    def run(settings: ServerSettings) -> int:
        if settings.cluster is not None:
            from workerctl.server.cluster_serve import run_cluster_server
            return run_cluster_server(settings)
        from workerctl.server.serve import run_server
        return run_server(settings)
    return _run_with_settings(run, config, flags)


def agent(config: str | None, **flags: str | bool | None) -> ExitStatus:
    from workerctl.server.agent import run_agent
    return _run_with_settings(run_agent, config, flags)


def _run_with_settings(run: Callable[[ServerSettings], int], config: str | None,
                       flags: dict[str, str | bool | None]) -> ExitStatus:
    """Load the settings (the file, then the flags) and run; what keeps it from starting as one CLI error."""
    from workerctl.server.serve import ServeError
    from workerctl.runtime.settings import SettingsError, SettingsFileError, load_settings
    try:
        settings = load_settings(Path(config) if config else None, **flags)
    except SettingsFileError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None
    except SettingsError as error:
        raise usage_error(str(error)) from None
    try:
        return ExitStatus(run(settings))
    except ServeError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None


@contextmanager
def _users_file_errors() -> Iterator[None]:
    """The users file's errors as the CLI's: a name that is not one (64), a user that is there already or is not
    (65), and only what is wrong with the file itself a settings problem (78)."""
    from workerctl.store.users import UserConflict, UserNameError, UsersFileError
    try:
        yield
    except UserNameError as error:
        raise usage_error(str(error)) from None
    except UserConflict as error:
        raise CliError(ExitStatus.REFUSED, str(error)) from None
    except UsersFileError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None


_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _expiry(duration: str | None) -> datetime | None:
    """The moment `duration` (30s, 15m, 12h, 90d, 2w) from now; None for no duration."""
    if duration is None:
        return None
    match = _DURATION.fullmatch(duration.strip())
    if match is None:
        raise usage_error(f"--expires must be a whole number followed by s, m, h, d or w (as in 90d), "
                          f"not {duration!r}")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).replace(microsecond=0)


def _print_token(message: str, token: str) -> None:
    print(f"{PROGRAM}: {message}; the token follows, shown only this once", file=sys.stderr)
    print(token)


def add_user(name: str, users: Path, expires: str | None) -> ExitStatus:
    from workerctl.store.users import add_user
    expiry = _expiry(expires)
    with _users_file_errors():
        token = add_user(users, name, expiry)
    _print_token(f"added user {name} to {users}" + _until(expiry), token)
    return ExitStatus.OK


def rotate_token(name: str, users: Path, expires: str | None) -> ExitStatus:
    from workerctl.store.users import load_users, rotate_token
    with _users_file_errors():
        token = rotate_token(users, name, _expiry(expires))
        expiry = load_users(users)[name].expires
    _print_token(f"gave user {name} a new token; the old one no longer works" + _until(expiry), token)
    return ExitStatus.OK


def _until(expiry: datetime | None) -> str:
    from workerctl.store.users import format_time
    return f" (it expires at {format_time(expiry)})" if expiry else ""


def remove_user(name: str, users: Path) -> ExitStatus:
    from workerctl.store.users import remove_user
    with _users_file_errors():
        remove_user(users, name)
    return ExitStatus.OK


def list_users(users: Path) -> ExitStatus:
    from workerctl.store.users import format_time, list_users
    with _users_file_errors():
        entries = list_users(users)
    now = datetime.now(timezone.utc)
    for name, user in entries:
        if user.expires is None:
            print(name)
        else:
            print(f"{name}\t{'expired' if user.expired(now) else 'expires'} {format_time(user.expires)}")
    return ExitStatus.OK


def certs(out: Path, hosts: str, days: int | None, client: str | None) -> ExitStatus:
    from workerctl.server.certificates import mint_certificates, mint_client_certificate
    with _minting(out):
        if client is not None:
            user = mint_client_certificate(out, client, days=days or _CLIENT_DAYS)
            print(f"client certificate: {user.cert}\nclient key:         {user.key}")
            return ExitStatus.OK
        minted = mint_certificates(out, _host_list(hosts), days=days or _SERVER_DAYS)
    print(f"CA certificate:     {minted.ca_cert}\nCA key:             {minted.ca_key}\n"
          f"server certificate: {minted.server_cert}\nserver key:         {minted.server_key}")
    return ExitStatus.OK


def renew_certs(out: Path, hosts: str | None, days: int | None) -> ExitStatus:
    from workerctl.server.certificates import SERVER_KEY_FILE, renew_server_certificate
    with _minting(out):
        server_cert = renew_server_certificate(out, None if hosts is None else _host_list(hosts),
                                               days=days or _SERVER_DAYS)
    print(f"server certificate: {server_cert}\nserver key:         {out / SERVER_KEY_FILE}\n"
          "Restart the server to serve it; clients keep their ca.pem.")
    return ExitStatus.OK


def _host_list(hosts: str) -> list[str]:
    return [host.strip() for host in hosts.split(",")]


@contextmanager
def _minting(out: Path) -> Iterator[None]:
    """Certificate errors as the CLI's: a mistake in what was asked (64), or files it cannot use (78)."""
    try:
        yield
    except ValueError as error:
        raise usage_error(str(error)) from None
    except OSError as error:
        raise CliError(ExitStatus.CONFIG, f"cannot use {out}: {error.strerror or error}") from None


_SERVER_DAYS = 7300
_CLIENT_DAYS = 365


_USERS_FILE = Option("users", "the users file", kind=Path, default=DEV_USERS,
                     shown_default="certs/dev-users.toml, the development users file", metavar="FILE")
_NAME = Argument("name", "the user's name: letters, digits, '_', '.' or '-'")
_EXPIRES = Option("expires", "the token stops working this long from now: a whole number and s, m, h, d or w, "
                  "as in 90d", shown_default="never", metavar="DURATION")



def _settings_options(left_out: tuple[str, ...] = ()) -> tuple[Option, ...]:
    """The settings file and a flag for every setting but those `left_out`."""
    settings = [setting for setting in SETTINGS if setting.name not in left_out]
    return (
        Option("config", "a TOML settings file with any of the settings below (flags win)", shown_default="none",
               metavar="FILE"),
        *(Option(setting.flag_name, setting.help, kind=bool if setting.kind is bool else str,
                 shown_default=setting.shown, metavar=setting.metavar, choices=setting.choices)
          for setting in settings),
        *(Option(alias.replace("_", "-"), f"the former name of --{setting.flag_name}", shown_default=setting.shown,
                 metavar=setting.metavar)
          for setting in settings for alias in setting.aliases))


SERVER_COMMANDS = (
    Command(
        "serve", "run the server (front end and supervisor) until SIGTERM or Ctrl-C", serve, (), _settings_options(),
        details="With no flags, it serves the public development material in certs/ on 127.0.0.1:8443. With "
                "--cluster URL, it is a front end of that cluster and runs no jobs itself."),
    Command(
        "agent", "run one worker host of a cluster (its supervisor, taking jobs from the cluster) until SIGTERM",
        agent, (), _settings_options(left_out=FRONT_END_SETTINGS),
        details="Needs --cluster URL and --name NAME, and a --data-dir of its own where several agents share a "
                "machine; the supervisor's settings apply to this host's jobs (docs/cluster.md)."),
    Command("users add", "add a user with a fresh token, and print the token once", add_user, (_NAME,),
            (_USERS_FILE, _EXPIRES), details="The users file keeps only the token's SHA-256; the server picks the "
                                             "change up without a restart."),
    Command("users rotate", "give a user a fresh token and print it once; the old one stops working at once",
            rotate_token, (_NAME,),
            (_USERS_FILE, Option("expires", "the new token stops working this long from now (30s, 12h, 90d, 2w)",
                                 shown_default="when the old one would have", metavar="DURATION"))),
    Command("users remove", "remove a user; their token stops working at once", remove_user, (_NAME,),
            (_USERS_FILE,)),
    Command("users list", "list the users' names, and when their tokens expire", list_users, (),
            (_USERS_FILE,)),
    Command(
        "certs", "mint a new CA and a server certificate, or a client certificate for a user", certs, (),
        (Option("out", "the directory to write ca.pem, ca-key.pem, server.pem and server-key.pem into (with "
                "--client: the directory of the CA)", kind=Path, metavar="DIR", required=True),
         Option("hosts", "the server's host names and IP addresses, comma-separated",
                default="localhost,127.0.0.1,::1", metavar="H1,H2"),
         Option("days", "how long the certificates are valid", kind=int,
                shown_default=f"{_SERVER_DAYS}, or {_CLIENT_DAYS} for a client certificate", metavar="DAYS"),
         Option("client", "mint a certificate naming this user, client-NAME.pem and client-NAME-key.pem, with "
                "the CA in --out", shown_default="none: a CA and a server certificate", metavar="NAME")),
        details="Keys are written with mode 0600; keep ca-key.pem private, or offline between uses. For mutual "
                "TLS, serve with --client-ca DIR/ca.pem; a client then passes --cert and --key in place of a token. "
                "Removing the user from the users file stops their certificate working. `workerctl certs renew` "
                "issues a new server certificate from the same CA."),
    Command(
        "certs renew", "issue a new server certificate from the CA in --out; clients keep their ca.pem",
        renew_certs, (),
        (Option("out", "the directory of the CA (ca.pem, ca-key.pem) and of the server's pair, which is replaced",
                kind=Path, metavar="DIR", required=True),
         Option("hosts", "the server's host names and IP addresses, comma-separated",
                shown_default="those of the certificate it replaces", metavar="H1,H2"),
         Option("days", "how long the certificate is valid (never past the CA)", kind=int,
                shown_default=str(_SERVER_DAYS), metavar="DAYS"))),
)
