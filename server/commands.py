"""The commands that run on the server's host: serve, users and certs, as rows of the command table.

Declaring them imports little; what each runs is imported when it runs, so the job commands stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workerctl.cli.exit_status import CliError, ExitStatus
from workerctl.cli.table import PROGRAM, Argument, Command, Option, usage_error
from workerctl.dev_material import DEV_USERS
from workerctl.server.settings import SETTINGS


def serve(config: str | None, **flags: str | None) -> ExitStatus:
    from workerctl.server.serve import ServeError, run_server
    from workerctl.server.settings import SettingsError, load_settings
    try:
        settings = load_settings(Path(config) if config else None, **flags)
    except SettingsError as error:
        raise usage_error(str(error)) from None
    try:
        return ExitStatus(run_server(settings))
    except ServeError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None


@contextmanager
def _users_file_errors() -> Iterator[None]:
    from workerctl.store.users import UsersFileError
    try:
        yield
    except UsersFileError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None


def add_user(name: str, users: Path) -> ExitStatus:
    from workerctl.store.users import add_user
    with _users_file_errors():
        token = add_user(users, name)
    print(f"{PROGRAM}: added user {name} to {users}; their token follows, shown only this once", file=sys.stderr)
    print(token)
    return ExitStatus.OK


def remove_user(name: str, users: Path) -> ExitStatus:
    from workerctl.store.users import remove_user
    with _users_file_errors():
        remove_user(users, name)
    return ExitStatus.OK


def list_users(users: Path) -> ExitStatus:
    from workerctl.store.users import list_users
    with _users_file_errors():
        names = list_users(users)
    for name in names:
        print(name)
    return ExitStatus.OK


def certs(out: Path, hosts: str, days: int) -> ExitStatus:
    from workerctl.server.certificates import mint_certificates
    try:
        minted = mint_certificates(out, [host.strip() for host in hosts.split(",")], days=days)
    except ValueError as error:
        raise usage_error(str(error)) from None
    except OSError as error:
        raise CliError(ExitStatus.CONFIG, f"cannot write to {out}: {error.strerror or error}") from None
    print(f"CA certificate:     {minted.ca_cert}\nserver certificate: {minted.server_cert}\n"
          f"server key:         {minted.server_key}")
    return ExitStatus.OK


_USERS_FILE = Option("users", "the users file", kind=Path, default=DEV_USERS,
                     shown_default="certs/dev-users.toml, the development users file", metavar="FILE")
_NAME = Argument("name", "the user's name: letters, digits, '_', '.' or '-'")

SERVER_COMMANDS = (
    Command(
        "serve", "run the server (front end and supervisor) until SIGTERM or Ctrl-C", serve, (),
        (Option("config", "a TOML settings file with any of the settings below (flags win)", metavar="FILE"),
         *(Option(setting.flag_name, setting.help, shown_default=setting.shown, metavar=setting.metavar)
           for setting in SETTINGS),
         *(Option(alias.replace("_", "-"), f"the former name of --{setting.flag_name}", metavar=setting.metavar)
           for setting in SETTINGS for alias in setting.aliases)),
        details="With no flags, it serves the public development material in certs/ on 127.0.0.1:8443."),
    Command("users add", "add a user with a fresh token, and print the token once", add_user, (_NAME,),
            (_USERS_FILE,), details="The users file keeps only the token's SHA-256; the server picks the change up "
                                    "without a restart."),
    Command("users remove", "remove a user; their token stops working at once", remove_user, (_NAME,),
            (_USERS_FILE,)),
    Command("users list", "list the users' names", list_users, (), (_USERS_FILE,)),
    Command(
        "certs", "mint a new CA and a server certificate", certs, (),
        (Option("out", "the directory to write ca.pem, server.pem and server-key.pem into", kind=Path,
                metavar="DIR", required=True),
         Option("hosts", "the server's host names and IP addresses, comma-separated",
                default="localhost,127.0.0.1,::1", metavar="H1,H2"),
         Option("days", "how long the certificates are valid", kind=int, default=7300, metavar="DAYS"))),
)
