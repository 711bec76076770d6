"""The `workerctl` commands, read by python-fire.

Fire only parses the command line here: each command records the call it was asked for, and `run` makes that
call after Fire returns. That keeps Fire's own output (help, usage errors) apart from ours, so a usage error is
one line and exit status 64, and our errors never pass through Fire.

Fire would turn arguments such as `123`, `1e5` or `True` into numbers and booleans; every text argument is
told to stay text, so job IDs and commands pass through verbatim.
"""

import contextlib
import functools
import inspect
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workerctl import render
from workerctl.api_client import ApiClient
from workerctl.client_settings import resolve
from workerctl.exit_status import CliError, ExitStatus, for_job
from workerctl.protocol.jobs import FINAL_STATUSES, MAX_WAIT_SECONDS

PROGRAM = "workerctl"

_CONNECTION_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)
    for name in ("server", "token", "token_file", "ca", "config")
] + [inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)]
_CONNECTION_FLAGS = {f"--{parameter.name}" for parameter in _CONNECTION_OPTIONS} | {"--token-file"}

Call = Callable[[], ExitStatus]


class _Recorder:
    """Holds the one call Fire chose, to be made after Fire returns."""

    chosen: Call | None = None


def _keep_text_verbatim(function: Callable[..., Any], signature: inspect.Signature) -> None:
    import fire

    text_parameters = {name: str for name, parameter in signature.parameters.items()
                       if "str" in str(parameter.annotation)}
    fire.decorators.SetParseFns(**text_parameters)(function)


def _local_command(method: Callable[..., ExitStatus]) -> Callable[..., None]:
    """A command that runs here, without the server."""
    @functools.wraps(method)
    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        self._recorder.chosen = functools.partial(method, self, *args, **kwargs)

    _keep_text_verbatim(record, inspect.signature(method))
    return record


def _job_command(method: Callable[..., ExitStatus]) -> Callable[..., None]:
    """A command that talks to the server: it takes the connection options too, and gets a client."""
    own = list(inspect.signature(method).parameters.values())
    signature = inspect.Signature([own[0], *own[3:], *_CONNECTION_OPTIONS])  # drop (client, as_json)

    @functools.wraps(method)
    def record(self: Any, *args: Any, server: str | None = None, token: str | None = None,
               token_file: str | None = None, ca: str | None = None, config: str | None = None,
               json: bool = False, **kwargs: Any) -> None:
        def call() -> ExitStatus:
            client = ApiClient(resolve(server, token, token_file, ca, config))
            try:
                return method(self, client, bool(json), *args, **kwargs)
            finally:
                client.close()
        self._recorder.chosen = call

    record.__signature__ = signature  # type: ignore[attr-defined]
    _keep_text_verbatim(record, signature)
    return record


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


class Users:
    """Manage the server's users file (default: the development users file in certs/)."""

    def __init__(self, recorder: _Recorder) -> None:
        self._recorder = recorder

    @_local_command
    def add(self, name: str, *, users: str | None = None) -> ExitStatus:
        """Add a user with a fresh token, and print the token: it is shown this once and stored nowhere."""
        from workerctl.store.users import add_user
        path = _users_path(users)
        token = _users_file_call(add_user, path, name)
        print(f"{PROGRAM}: added user {name} to {path}; their token follows, shown only this once",
              file=sys.stderr)
        _out(token)
        return ExitStatus.OK

    @_local_command
    def remove(self, name: str, *, users: str | None = None) -> ExitStatus:
        """Remove a user; their token stops working at once."""
        from workerctl.store.users import remove_user
        _users_file_call(remove_user, _users_path(users), name)
        return ExitStatus.OK

    @_local_command
    def list(self, *, users: str | None = None) -> ExitStatus:
        """List the users' names."""
        from workerctl.store.users import list_users
        for name in _users_file_call(list_users, _users_path(users)):
            _out(name)
        return ExitStatus.OK


def _users_path(users: str | None) -> Path:
    from workerctl.dev_material import DEV_USERS
    return Path(users).expanduser() if users else DEV_USERS


def _users_file_call(function: Callable[..., Any], *args: Any) -> Any:
    from workerctl.store.users import UsersFileError
    try:
        return function(*args)
    except UsersFileError as error:
        raise CliError(ExitStatus.CONFIG, str(error)) from None


class Cli:
    """Run shell commands on a workerctl server, and follow them.

    Job commands take --server, --token, --token-file, --ca and --config (else WORKERCTL_SERVER,
    WORKERCTL_TOKEN, WORKERCTL_TOKEN_FILE, WORKERCTL_CA, the settings file, the development defaults) and --json.
    """

    def __init__(self, recorder: _Recorder) -> None:
        self._recorder = recorder
        self.users = Users(recorder)

    @_job_command
    def start(self, client: ApiClient, as_json: bool, command: str, *, key: str | None = None) -> ExitStatus:
        """Start COMMAND (one quoted argument) with /bin/sh; --key makes a retry return the same job."""
        answer = client.call("start", command=command, idempotencyKey=key)
        _out(render.as_json(answer) if as_json else render.job_lines(answer))
        return ExitStatus.OK

    @_job_command
    def stop(self, client: ApiClient, as_json: bool, job_id: str) -> ExitStatus:
        """Stop a job and every process it started; a job that has ended stays as it is."""
        answer = client.call("stop", jobID=job_id)
        _out(render.as_json(answer) if as_json else render.job_lines(answer))
        return ExitStatus.OK

    @_job_command
    def status(self, client: ApiClient, as_json: bool, job_id: str) -> ExitStatus:
        """Show a job's status and its output so far."""
        answers = list(_output_answers(client, job_id, follow=False))
        answer = {**answers[-1], "output": "".join(part["output"] for part in answers)}
        sys.stdout.write(render.as_json(answer) + "\n" if as_json else render.status_text(answer))
        return ExitStatus.OK

    @_job_command
    def wait(self, client: ApiClient, as_json: bool, job_id: str, *, timeout: float | None = None) -> ExitStatus:
        """Wait until a job ends (at most --timeout seconds) and exit with its outcome: 0 finished with exit
        code 0, 1 finished with another, 2 stopped, 3 error, 4 not finished in time."""
        answer = _wait_until_final(client, job_id, None if timeout is None else _number("timeout", timeout))
        _out(render.as_json(answer) if as_json else render.outcome_lines(answer))
        return for_job(answer["status"], answer["exitCode"])

    @_job_command
    def logs(self, client: ApiClient, as_json: bool, job_id: str, *, follow: bool = False) -> ExitStatus:
        """Print a job's output; with -f, follow it live until the job ends, then exit with its outcome.
        With --json, each piece of output comes as one line: the status answer that carried it."""
        for answer in _output_answers(client, job_id, follow=bool(follow)):
            sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n" if as_json else answer["output"])
            sys.stdout.flush()
        return for_job(answer["status"], answer["exitCode"]) if follow else ExitStatus.OK

    @_job_command
    def list(self, client: ApiClient, as_json: bool, *, status: str | None = None, limit: int = 20) -> ExitStatus:
        """List your jobs, newest first; --status keeps only jobs in that status."""
        answer = client.call("list", status=status, limit=int(_number("limit", limit, whole=True)))
        _out(render.as_json(answer) if as_json else render.job_table(answer["jobs"]))
        return ExitStatus.OK

    @_local_command
    def serve(self, *, config: str | None = None, host: str | None = None, port: int | None = None,
              cert: str | None = None, key: str | None = None, users: str | None = None,
              data_dir: str | None = None, job_timeout: float | None = None, kill_grace: float | None = None,
              max_jobs: int | None = None, max_jobs_per_user: int | None = None,
              max_queued_per_user: int | None = None,
              max_output_bytes: int | None = None, max_job_processes: int | None = None,
              job_user: str | None = None, containment: str | None = None,
              retention_days: float | None = None, retention_jobs: int | None = None,
              log_level: str | None = None) -> ExitStatus:
        """Run the server (front end and supervisor) until SIGTERM or Ctrl-C; see the README for each setting."""
        from workerctl.server.serve import ServeError, serve
        from workerctl.server.settings import SettingsError, load_settings
        try:
            settings = load_settings(Path(config) if config else None, host=host, port=port, cert=cert, key=key,
                                     users=users, data_dir=data_dir, job_timeout=job_timeout,
                                     kill_grace=kill_grace, max_jobs=max_jobs, max_jobs_per_user=max_jobs_per_user,
                                     max_queued_per_user=max_queued_per_user,
                                     max_output_bytes=max_output_bytes, max_job_processes=max_job_processes,
                                     job_user=job_user,
                                     containment=containment, retention_days=retention_days,
                                     retention_jobs=retention_jobs, log_level=log_level)
        except SettingsError as error:
            raise CliError(ExitStatus.USAGE, str(error)) from None
        try:
            return ExitStatus(serve(settings))
        except ServeError as error:
            raise CliError(ExitStatus.CONFIG, str(error)) from None

    @_local_command
    def certs(self, *, out: str, hosts: str = "localhost,127.0.0.1,::1", days: int = 7300) -> ExitStatus:
        """Mint a new CA and a server certificate for --hosts (comma-separated) into the directory --out."""
        from workerctl.server.certificates import mint_certificates
        try:
            minted = mint_certificates(Path(out), [host.strip() for host in hosts.split(",")], days=int(days))
        except ValueError as error:
            raise CliError(ExitStatus.USAGE, str(error)) from None
        _out(f"CA certificate:     {minted.ca_cert}\nserver certificate: {minted.server_cert}\n"
             f"server key:         {minted.server_key}")
        return ExitStatus.OK


_NO_OUTPUT = 2**62  # an offset past any output: a status answer without output, woken only by a new status


def _output_answers(client: ApiClient, job_id: str, follow: bool) -> Iterator[dict[str, Any]]:
    """Status answers that together carry all of a job's output, each from where the last one ended; with
    `follow`, long polls until the job has ended and all of its output is read."""
    offset = 0
    while True:
        answer = client.call("status", jobID=job_id, offset=offset, wait=MAX_WAIT_SECONDS if follow else 0)
        offset = answer["nextOffset"]
        yield answer
        if offset >= answer["outputBytes"] and (not follow or answer["status"] in FINAL_STATUSES):
            return


def _wait_until_final(client: ApiClient, job_id: str, timeout: float | None) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    while True:
        remaining = MAX_WAIT_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
        answer = client.call("status", jobID=job_id, offset=_NO_OUTPUT, wait=min(remaining, MAX_WAIT_SECONDS))
        if answer["status"] in FINAL_STATUSES or remaining <= 0:
            return answer


def _hide_parse_settings_from_help() -> None:
    """SetParseFns stores its settings on the function as a FIRE_METADATA attribute, which Fire's help then
    lists as a command group (fire 0.7); leave it out."""
    import fire
    visible = fire.completion.MemberVisible

    def member_visible(component: Any, name: Any, member: Any, *args: Any, **kwargs: Any) -> bool:
        return name != fire.decorators.FIRE_METADATA and visible(component, name, member, *args, **kwargs)

    fire.completion.MemberVisible = member_visible


# Fire reads `--flag VALUE` for a boolean flag too, so `logs -f ID` would make the ID the value of --follow.
# These flags never take a value; spelling them out keeps the next argument where it belongs.
_SWITCHES = {"-f": "--follow=True", "--follow": "--follow=True", "--json": "--json=True", "-h": "--help"}


def _number(name: str, value: Any, whole: bool = False) -> float:
    """A number given on the command line; a usage error if it is not one."""
    try:
        number = float(value)
        if whole and not number.is_integer():
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise CliError(ExitStatus.USAGE, f"--{name} must be a {'whole ' if whole else ''}number, not {value!r}")


def _commands_first(args: list[str]) -> list[str]:
    """Move connection options given before the command (`workerctl --server URL status ID`) after it,
    where Fire looks for them."""
    leading: list[str] = []
    while args and args[0].split("=", 1)[0] in _CONNECTION_FLAGS:
        takes_value = "=" not in args[0] and args[0] != "--json"
        leading, args = leading + args[:1 + takes_value], args[1 + takes_value:]
    return args + leading


def run(args: list[str]) -> int:
    """Run the command line `args`; the exit status."""
    import fire

    if args in (["--version"], ["version"]):
        import importlib.metadata  # here, not at the top: it costs every other command 20 ms

        print(f"{PROGRAM} {importlib.metadata.version('workerctl')}")
        return ExitStatus.OK
    debug = "--debug" in args
    args = _commands_first([_SWITCHES.get(arg, arg) for arg in args if arg != "--debug"])
    _hide_parse_settings_from_help()
    recorder = _Recorder()
    fire_says = io.StringIO()
    try:
        with contextlib.redirect_stderr(fire_says):
            fire.Fire(Cli(recorder), command=args, name=PROGRAM)
    except fire.core.FireExit as exit:
        if exit.code == 0:  # help was asked for; Fire writes it to stderr, we give it to stdout
            sys.stdout.write("".join(line for line in fire_says.getvalue().splitlines(keepends=True)
                                     if not line.startswith("INFO: Showing help")))
            return ExitStatus.OK
        error = exit.trace.elements[-1].ErrorAsStr() if exit.trace and exit.trace.HasError() else "bad usage"
        hint = f"see '{PROGRAM} --help'"
        if args[:1] == ["start"] and "consume arg" in error:
            hint = f'quote the command as one argument, as in: {PROGRAM} start "ls -l"'
        print(f"{PROGRAM}: {error[:1].lower() + error[1:]} ({hint})", file=sys.stderr)
        return ExitStatus.USAGE
    if recorder.chosen is None:  # a command group without a command: Fire printed its usage
        return ExitStatus.USAGE
    try:
        return recorder.chosen()
    except CliError as error:
        print(f"{PROGRAM}: {error.message}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush is silent
        return ExitStatus.OK
    except Exception as error:  # a bug: say so in one line, with the traceback only on request
        if debug:
            traceback.print_exc()
        print(f"{PROGRAM}: internal error: {type(error).__name__}: {error} (run with --debug for details)",
              file=sys.stderr)
        return ExitStatus.SOFTWARE
