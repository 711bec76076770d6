"""The exit statuses of the `workerctl` command: a contract scripts and cron jobs can rely on.

0 to 4 say what happened to a job (`wait`, `logs -f`); 64 and up (from sysexits.h) say the tool itself could
not do what was asked, so "the server is down" never looks like "the job failed".
"""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # done as asked; for wait and logs -f: the job finished with exit code 0
    JOB_FAILED = 1  # the job finished with a non-zero exit code
    JOB_STOPPED = 2  # the job was stopped by its owner
    JOB_ERROR = 3  # the job could not start or was ended by the server (its time limit, a restart)
    JOB_NOT_DONE = 4  # the job had not finished when `wait --timeout` ran out
    USAGE = 64  # the command line is wrong
    REFUSED = 65  # the server refused the request as invalid (400, 409, 413)
    NO_SUCH_JOB = 66  # no such job for this user (404)
    UNAVAILABLE = 69  # server unreachable, its certificate refused, or it answered 429, 503 or 507
    SOFTWARE = 70  # the server failed (500) or answered something that is not the API
    NO_PERMISSION = 77  # authentication failed (401)
    CONFIG = 78  # a settings file, token file or CA file is missing or wrong


_FOR_HTTP_STATUS = {
    400: ExitStatus.REFUSED,
    409: ExitStatus.REFUSED,
    413: ExitStatus.REFUSED,
    401: ExitStatus.NO_PERMISSION,
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
