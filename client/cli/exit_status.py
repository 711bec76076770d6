"""The exit statuses of the `workerctl` command: a contract scripts and cron jobs can rely on.

0 to 4 say what happened to a job (`wait`, `logs -f`); 64 and up (from sysexits.h) say the tool itself could
not do what was asked, so "the server is down" never looks like "the job failed".
"""

from enum import IntEnum


class ExitStatus(IntEnum):
    """What each status means is said once, in MEANINGS below: help shows that table."""

    OK = 0
    JOB_FAILED = 1
    JOB_STOPPED = 2
    JOB_ERROR = 3
    JOB_NOT_DONE = 4
    USAGE = 64
    REFUSED = 65
    NO_SUCH_JOB = 66
    UNAVAILABLE = 69
    SOFTWARE = 70
    NO_PERMISSION = 77
    CONFIG = 78
    INTERRUPTED = 130


MEANINGS = {
    ExitStatus.OK: "done as asked; for wait and logs -f: the job finished with exit code 0",
    ExitStatus.JOB_FAILED: "the job finished with another exit code",
    ExitStatus.JOB_STOPPED: "the job was stopped by its owner",
    ExitStatus.JOB_ERROR: "the job could not start, or the server ended it (its time limit, a restart)",
    ExitStatus.JOB_NOT_DONE: "the job had not ended when wait --timeout ran out",
    ExitStatus.USAGE: "the command line is wrong: an unknown command or option, a value that is not one, a user "
                      "name that is not valid",
    ExitStatus.REFUSED: "the request is not valid: the server refused it (400, 409, 413), or the user to add "
                        "exists already, or the user to change does not",
    ExitStatus.NO_SUCH_JOB: "you have no job with that ID (404)",
    ExitStatus.UNAVAILABLE: "the server is unreachable, its certificate is refused, or it answered 429, 503 or 507",
    ExitStatus.SOFTWARE: "the server failed (500) or answered something that is not the API, or workerctl itself "
                         "failed",
    ExitStatus.NO_PERMISSION: "the server does not accept your token or certificate (401, 403)",
    ExitStatus.CONFIG: "a settings, token, CA or certificate file, or the users file, is missing or wrong (for "
                       "serve: anything else that keeps it from starting, too)",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}


def markdown_table() -> str:
    """MEANINGS as docs/cli.md shows them (a test keeps the two the same)."""
    rows = [f"| {status.value} | {meaning} |" for status, meaning in MEANINGS.items()]
    return "\n".join(["| status | meaning |", "| --- | --- |", *rows])


_FOR_HTTP_STATUS = {
    400: ExitStatus.REFUSED,
    409: ExitStatus.REFUSED,
    413: ExitStatus.REFUSED,
    401: ExitStatus.NO_PERMISSION,
    403: ExitStatus.NO_PERMISSION,
    404: ExitStatus.NO_SUCH_JOB,
    429: ExitStatus.UNAVAILABLE,
    503: ExitStatus.UNAVAILABLE,
    507: ExitStatus.UNAVAILABLE,
}


def for_http_status(status: int) -> ExitStatus:
    return _FOR_HTTP_STATUS.get(status, ExitStatus.SOFTWARE)


def for_job(status: str, exit_code: int | None) -> ExitStatus:
    """The exit status that reports a job's outcome; JOB_NOT_DONE while it is not final."""
    if status == "finished":
        return ExitStatus.OK if exit_code == 0 else ExitStatus.JOB_FAILED
    if status == "stopped":
        return ExitStatus.JOB_STOPPED
    if status == "error":
        return ExitStatus.JOB_ERROR
    return ExitStatus.JOB_NOT_DONE


class CliError(Exception):
    """The command cannot do what was asked: a one-line message and the exit status to end with."""

    def __init__(self, status: ExitStatus, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable  # the server was unreachable or unavailable: asking again may succeed
