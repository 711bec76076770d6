"""The commands that talk to the server: start, status, logs, wait, stop and list.

Each takes the connection options (--server, --token, --token-file, --ca, --config) and --json, and gets an
HTTPS client built from them. Their options that are API fields take their help from the protocol's table.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from workerctl.cli import render
from workerctl.cli.api_client import ApiClient
from workerctl.cli.exit_status import ExitStatus, for_job
from workerctl.cli.settings import resolve
from workerctl.cli.table import Argument, Command, Option, usage_error
from workerctl.protocol.actions import ListRequest, StartRequest, api_fields
from workerctl.protocol.jobs import FINAL_STATUSES, MAX_WAIT_SECONDS
from workerctl.protocol.sizes import parse_size

CONNECTION_OPTIONS = (
    Option("server", "the server's URL (default: WORKERCTL_SERVER, the settings file, https://127.0.0.1:8443)",
           metavar="URL"),
    Option("token", "your token (default: WORKERCTL_TOKEN, the settings file, the development token)",
           metavar="TOKEN"),
    Option("token-file", "a file holding your token, which keeps it out of process lists", metavar="FILE"),
    Option("ca", "the CA certificate to check the server's against (PEM)", metavar="FILE"),
    Option("cert", "a client certificate naming you (PEM), in place of a token where the server accepts them",
           metavar="FILE"),
    Option("key", "the client certificate's private key (PEM), if it is not in the certificate's file",
           metavar="FILE"),
    Option("config", "the settings file (default: WORKERCTL_CONFIG, ~/.config/workerctl/config.toml)",
           metavar="FILE"),
    Option("json", "print the API's JSON answer instead", kind=bool, default=False),
    Option("retry", "while the server is unreachable or restarting, ask again for up to this many seconds "
           "(status, logs, wait, list, stop, and start with --key)", kind=float, default=10.0, metavar="SECONDS"),
)

_JOB_ID = Argument("job_id", "the job's ID, as start printed it")
_NO_OUTPUT = 2**62  # an offset past any output: a status answer without output, woken only by a new status

JobRun = Callable[..., ExitStatus]


def _api_help(request: type, attribute: str) -> str:
    return next(field.help for field in api_fields(request) if field.attribute == attribute)


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def start(client: ApiClient, as_json: bool, command: str, idempotency_key: str | None, timeout: float | None,
          memory: str | None, cpus: float | None) -> ExitStatus:
    limits = {name: value for name, value in (("timeoutSeconds", timeout), ("memoryBytes", _size(memory)),
                                              ("cpus", cpus)) if value is not None}
    # With a key, asking again cannot start a second job.
    answer = client.call("start", safe_to_repeat=idempotency_key is not None, command=command,
                         idempotencyKey=idempotency_key, limits=limits or None)
    _out(render.as_json(answer) if as_json else render.job_lines(answer))
    return ExitStatus.OK


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise usage_error(f"--memory: {error}") from None


def stop(client: ApiClient, as_json: bool, job_id: str) -> ExitStatus:
    answer = client.call("stop", safe_to_repeat=True, jobID=job_id)
    _out(render.as_json(answer) if as_json else render.job_lines(answer))
    return ExitStatus.OK


def status(client: ApiClient, as_json: bool, job_id: str) -> ExitStatus:
    answers = list(_output_answers(client, job_id, follow=False))
    answer = {**answers[-1], "output": "".join(part["output"] for part in answers)}
    sys.stdout.write(render.as_json(answer) + "\n" if as_json else render.status_text(answer))
    return ExitStatus.OK


def wait(client: ApiClient, as_json: bool, job_id: str, timeout: float | None) -> ExitStatus:
    answer = _wait_until_final(client, job_id, timeout)
    _out(render.as_json(answer) if as_json else render.outcome_lines(answer))
    return for_job(answer["status"], answer["exitCode"])


def logs(client: ApiClient, as_json: bool, job_id: str, follow: bool) -> ExitStatus:
    for answer in _output_answers(client, job_id, follow=follow):
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n" if as_json else answer["output"])
        sys.stdout.flush()
    return for_job(answer["status"], answer["exitCode"]) if follow else ExitStatus.OK


def list_jobs(client: ApiClient, as_json: bool, status: str | None, limit: int) -> ExitStatus:
    answer = client.call("list", safe_to_repeat=True, status=status, limit=limit)
    _out(render.as_json(answer) if as_json else render.job_table(answer["jobs"]))
    return ExitStatus.OK


def _output_answers(client: ApiClient, job_id: str, follow: bool) -> Iterator[dict[str, Any]]:
    """Status answers that together carry all of a job's output, each from where the last one ended; with
    `follow`, long polls until the job has ended and all of its output is read."""
    offset = 0
    while True:
        answer = client.call("status", safe_to_repeat=True, jobID=job_id, offset=offset,
                             wait=MAX_WAIT_SECONDS if follow else 0)
        offset = answer["nextOffset"]
        yield answer
        if offset >= answer["outputBytes"] and (not follow or answer["status"] in FINAL_STATUSES):
            return


def _wait_until_final(client: ApiClient, job_id: str, timeout: float | None) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = MAX_WAIT_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
        answer = client.call("status", safe_to_repeat=True, jobID=job_id, offset=_NO_OUTPUT,
                             wait=min(remaining, MAX_WAIT_SECONDS))
        if answer["status"] in FINAL_STATUSES or remaining <= 0:
            return answer


def _connected(run: JobRun) -> Callable[..., ExitStatus]:
    """`run`, given a client made from the connection options in place of them."""
    def call(server: str | None, token: str | None, token_file: str | None, ca: str | None, cert: str | None,
             key: str | None, config: str | None, json: bool, retry: float, **values: Any) -> ExitStatus:
        if "idempotency_key" in values:
            key, values["idempotency_key"] = _start_keys(cert, key, values["idempotency_key"])
        client = ApiClient(resolve(server, token, token_file, ca, config, cert, key), retry_seconds=retry)
        try:
            return run(client, json, **values)
        finally:
            client.close()
    return call


def _start_keys(cert: str | None, key: str | None, idempotency_key: str | None) -> tuple[str | None, str | None]:
    """The client key and the idempotency key of a start, whose --key (older than client certificates) is the
    idempotency key unless --cert is beside it."""
    if cert is not None or key is None:
        return key, idempotency_key
    if idempotency_key is not None:
        raise usage_error("give the idempotency key once, as --key or as --idempotency-key")
    return None, key


def _job_command(name: str, summary: str, run: JobRun, arguments: tuple[Argument, ...] = (),
                 options: tuple[Option, ...] = (), details: str = "") -> Command:
    own = {option.name for option in options}
    return Command(name, summary, _connected(run), arguments,
                   options + tuple(option for option in CONNECTION_OPTIONS if option.name not in own), details)


JOB_COMMANDS = (
    _job_command(
        "start", "start a shell command; prints its job ID", start,
        (Argument("command", "the command, as one quoted argument: workerctl start \"ls -l\""),),
        (Option("key", f"{_api_help(StartRequest, 'idempotency_key')}; beside --cert, the client certificate's "
                "key (PEM) instead", metavar="KEY"),
         Option("idempotency-key", "the same as --key without --cert", metavar="KEY"),
         Option("timeout", "end the job after this many seconds (the server's --job-timeout unless given, at most "
                "its --max-job-timeout)", kind=float, metavar="SECONDS"),
         Option("memory", "the job's memory limit, in bytes or with K, M or G (at most the server's --job-memory)",
                metavar="SIZE"),
         Option("cpus", "the cores of CPU time the job may use at once (at most the server's --job-cpus)",
                kind=float, metavar="N")),
        details="The command runs as /bin/sh -c COMMAND on the server, under its limits."),
    _job_command("status", "a job's status and its output so far", status, (_JOB_ID,)),
    _job_command(
        "logs", "a job's output; with -f, follow it until the job ends", logs, (_JOB_ID,),
        (Option("follow", "follow the output live until the job ends, then exit with its outcome", kind=bool,
                default=False, short="-f"),),
        details="With --json, each piece of output comes as one line: the status answer that carried it."),
    _job_command(
        "wait", "wait until a job ends and exit with its outcome", wait, (_JOB_ID,),
        (Option("timeout", "give up after this many seconds (exit status 4); 0 checks once", kind=float,
                shown_default="none", metavar="SECONDS"),),
        details="Exit status: 0 finished with exit code 0, 1 finished with another, 2 stopped, 3 error, "
                "4 not ended in time."),
    _job_command("stop", "stop a job and every process it started", stop, (_JOB_ID,),
                 details="Answers once every process of the job is gone; a job that has ended stays as it is."),
    _job_command(
        "list", "your jobs, newest first", list_jobs, (),
        (Option("status", _api_help(ListRequest, "status"), metavar="STATUS"),
         Option("limit", "at most this many jobs", kind=int, default=20, metavar="N"))),
)
