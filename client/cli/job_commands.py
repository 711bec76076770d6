"""The commands that talk to the server: start, status, logs, wait, stop, list and restart.

Each takes the connection options (--server, --token, --token-file, --ca, --config, --cert, --key, --retry)
and --json, and gets a Client (library.py) built from them. Their options that are API fields take their help
from the protocol's table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from workerctl.cli import render
from workerctl.cli.exit_status import ExitStatus, for_job
from workerctl.cli.table import ApiHelp, Argument, Command, Option, usage_error
from workerctl.library import Client
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.sizes import parse_size

CONNECTION_OPTIONS = (
    Option("server", "the server's URL", shown_default="WORKERCTL_SERVER, the settings file, https://127.0.0.1:8443",
           metavar="URL"),
    Option("token", "your token", shown_default="WORKERCTL_TOKEN, the settings file, the development token",
           metavar="TOKEN"),
    Option("token-file", "a file holding your token, which keeps it out of process lists",
           shown_default="WORKERCTL_TOKEN_FILE, the settings file", metavar="FILE"),
    Option("ca", "the CA certificate to check the server's against (PEM)",
           shown_default="WORKERCTL_CA, the settings file, the development CA", metavar="FILE"),
    Option("cert", "a client certificate naming you (PEM), in place of a token where the server accepts them",
           shown_default="WORKERCTL_CERT, the settings file, none", metavar="FILE"),
    Option("key", "the client certificate's private key (PEM)",
           shown_default="WORKERCTL_KEY, the settings file, the certificate's own file", metavar="FILE"),
    Option("config", "the settings file", shown_default="WORKERCTL_CONFIG, ~/.config/workerctl/config.toml",
           metavar="FILE"),
    Option("json", "print the API's JSON answer instead", kind=bool, default=False),
    Option("retry", "while the server is unreachable or restarting, ask again for up to this many seconds "
           "(status, logs, wait, list, stop, and start with --key)", kind=float, default=10.0, metavar="SECONDS"),
)

_JOB_ID = Argument("job_id", "the job's ID, as start printed it")
_STATUSES = tuple(status.value for status in JobStatus)

JobRun = Callable[..., ExitStatus]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def start(client: Client, as_json: bool, command: str, idempotency_key: str | None, timeout: float | None,
          memory: str | None, cpus: float | None, env: tuple[str, ...], label: tuple[str, ...],
          host_name: str | None = None) -> ExitStatus:
    answer = client.start(command, env=_variables(env), labels=label, key=idempotency_key, timeout=timeout,
                          memory_bytes=_size(memory), cpus=cpus, host=host_name)
    _out(render.as_json(answer) if as_json else render.job_lines(answer))
    return ExitStatus.OK


def _variables(assignments: tuple[str, ...]) -> dict[str, str]:
    """--env NAME=VALUE options as a dict; the server checks the names."""
    variables = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise usage_error(f"--env takes NAME=VALUE, not {assignment!r}")
        variables[name] = value
    return variables


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise usage_error(f"--memory: {error}") from None


def restart(client: Client, as_json: bool, job_id: str) -> ExitStatus:
    job = client.wait(job_id, timeout=0)  # as it is now, without its output
    limits = job.get("limits") or {}
    answer = client.start(job["command"], env=job.get("env"), labels=job.get("labels") or (),
                          timeout=limits.get("timeoutSeconds"), memory_bytes=limits.get("memoryBytes"),
                          cpus=limits.get("cpus"))
    _out(render.as_json(answer) if as_json else render.job_lines(answer))
    return ExitStatus.OK


def stop(client: Client, as_json: bool, job_id: str) -> ExitStatus:
    answer = client.stop(job_id)
    _out(render.as_json(answer) if as_json else render.job_lines(answer))
    return ExitStatus.OK


def status(client: Client, as_json: bool, job_id: str) -> ExitStatus:
    answer = client.status(job_id)
    sys.stdout.write(render.as_json(answer) + "\n" if as_json else render.status_text(answer))
    return ExitStatus.OK


def wait(client: Client, as_json: bool, job_id: str, timeout: float | None) -> ExitStatus:
    answer = client.wait(job_id, timeout)
    _out(render.as_json(answer) if as_json else render.outcome_lines(answer))
    return for_job(answer["status"], answer["exitCode"])


def logs(client: Client, as_json: bool, job_id: str, follow: bool, tail: int | None) -> ExitStatus:
    if tail is not None and tail < 0:
        raise usage_error("--tail takes a number of lines, 0 or more")
    answers = client.output_answers(job_id, follow)
    if tail is not None:
        answers = _from_tail(answers, tail)
    for answer in answers:
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n" if as_json else answer["output"])
        sys.stdout.flush()
    return for_job(answer["status"], answer["exitCode"]) if follow else ExitStatus.OK


def _from_tail(answers: Iterator[dict[str, Any]], lines: int) -> Iterator[dict[str, Any]]:
    """The answers with the output there is so far cut to its last `lines` lines, then the rest as they come."""
    caught_up: list[dict[str, Any]] = []
    for answer in answers:
        caught_up.append(answer)
        if answer["nextOffset"] >= answer["outputBytes"]:
            break
    text = "".join(answer["output"] for answer in caught_up)
    kept = text.splitlines(keepends=True)[-lines:] if lines else []
    yield {**caught_up[-1], "output": "".join(kept)}
    yield from answers


def list_jobs(client: Client, as_json: bool, status: str | None, label: str | None, limit: int) -> ExitStatus:
    if status is not None and status not in _STATUSES:
        raise usage_error(f"--status must be one of {', '.join(_STATUSES)}, not {status!r}")
    jobs = client.list(status=status, label=label, limit=limit)
    _out(render.as_json({"jobs": jobs}) if as_json else render.job_table(jobs))
    return ExitStatus.OK


def _connected(run: JobRun) -> Callable[..., ExitStatus]:
    """`run`, given a client made from the connection options in place of them."""
    def call(server: str | None, token: str | None, token_file: str | None, ca: str | None, cert: str | None,
             key: str | None, config: str | None, json: bool, retry: float, **values: Any) -> ExitStatus:
        if "idempotency_key" in values:
            key, values["idempotency_key"] = _start_keys(cert, key, values["idempotency_key"])
        with Client(server, token=token, token_file=token_file, ca=ca, cert=cert, key=key, config=config,
                    retry=retry) as client:
            return run(client, json, **values)
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
                 options: tuple[Option, ...] = (), details: str = "", trailing: str | None = None) -> Command:
    own = {option.name for option in options}
    return Command(name, summary, _connected(run), arguments,
                   options + tuple(option for option in CONNECTION_OPTIONS if option.name not in own), details,
                   trailing)


JOB_COMMANDS = (
    _job_command(
        "start", "start a shell command; prints its job ID", start,
        (Argument("command", "the command, as one quoted argument (workerctl start \"ls -l\"), or as words after "
                  "-- (workerctl start -- ls -l)"),),
        (Option("key", ApiHelp("start", "idempotency_key", "; beside --cert, the client certificate's key (PEM) "
                "instead"), shown_default="none", metavar="KEY"),
         Option("idempotency-key", "the same as --key without --cert", shown_default="none", metavar="KEY"),
         Option("timeout", "end the job after this many seconds, at most the server's --max-job-timeout", kind=float,
                shown_default="the server's --job-timeout", metavar="SECONDS"),
         Option("memory", "the job's memory limit, in bytes or with K, M or G, at most the server's --job-memory",
                shown_default="the server's --job-memory", metavar="SIZE"),
         Option("cpus", "the cores of CPU time the job may use at once, at most the server's --job-cpus",
                kind=float, shown_default="the server's --job-cpus", metavar="N"),
         Option("env", "set a variable in the job's environment (repeatable); names starting WORKERCTL_ are the "
                "server's", metavar="NAME=VALUE", repeatable=True, shown_default="none"),
         Option("label", "give the job a label to find it by with list --label (repeatable)", metavar="LABEL",
                repeatable=True, shown_default="none"),
         Option("host-name", "run the job on this host of a cluster (a cluster's front end only)", metavar="NAME",
                shown_default="any host with a free slot")),
        details="The command runs as /bin/sh -c COMMAND on the server, under its limits. After --, the words "
                "are quoted for the shell: workerctl start -- grep -r 'a b' /etc runs grep with 'a b' as one "
                "argument.",
        trailing="command"),
    _job_command("status", "a job's status and its output so far", status, (_JOB_ID,)),
    _job_command(
        "logs", "a job's output; with -f, follow it until the job ends", logs, (_JOB_ID,),
        (Option("follow", "follow the output live until the job ends, then exit with its outcome", kind=bool,
                default=False, short="-f"),
         Option("tail", "only the last N lines of the output so far (then, with -f, the rest as it comes)",
                kind=int, shown_default="all", metavar="N")),
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
        (Option("status", ApiHelp("list", "status", f": {', '.join(_STATUSES)}"), shown_default="any",
                metavar="STATUS", choices=_STATUSES),
         Option("label", ApiHelp("list", "label"), shown_default="any", metavar="LABEL"),
         Option("limit", "at most this many jobs", kind=int, default=20, metavar="N"))),
    _job_command("restart", "start a job again: the same command, environment, labels and limits; prints the new "
                 "job's ID", restart, (_JOB_ID,)),
)
