"""`workerctl.Client`: the API from Python, as the command line uses it.

    from workerctl import Client

    with Client() as client:  # the server, token and CA as the CLI finds them: flags aside, the same places
        job = client.start("make test", env={"CI": "1"}, labels=["nightly"])["jobID"]
        for text in client.logs(job, follow=True):
            print(text, end="")
        print(client.wait(job)["exitCode"])

Every method answers with the API's JSON objects as dicts (see docs/openapi.json). A refusal or an unreachable
server raises ClientError, whose `message` is one sentence and whose `status` is the exit status the CLI ends
with for it. Requests that are safe to repeat (all but a start without `key`) are sent again, with growing
pauses, while the server is unreachable or restarting, for up to `retry` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from workerctl.cli.api_client import ApiClient
from workerctl.cli.exit_status import CliError
from workerctl.cli.settings import resolve
from workerctl.protocol.jobs import FINAL_STATUSES, MAX_WAIT_SECONDS

ClientError = CliError

_NO_OUTPUT = 2**62  # an offset past any output: a status answer without output, woken only by a new status
_INTERNAL = ("output", "nextOffset")  # what a status asked for without output carries only for the poller


class Client:
    def __init__(self, server: str | None = None, *, token: str | None = None, token_file: str | None = None,
                 ca: str | None = None, cert: str | None = None, key: str | None = None, config: str | None = None,
                 retry: float = 10.0) -> None:
        """Settings not given come from WORKERCTL_SERVER, WORKERCTL_TOKEN, ... and the settings file, as the
        CLI's do; `key` is the client certificate's private key."""
        self._api = ApiClient(resolve(server, token, token_file, ca, config, cert, key), retry_seconds=retry)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()

    def start(self, command: str, *, env: dict[str, str] | None = None, labels: Sequence[str] = (),
              key: str | None = None, timeout: float | None = None, memory_bytes: int | None = None,
              cpus: float | None = None, host: str | None = None) -> dict[str, Any]:
        """Start `command` (run as /bin/sh -c COMMAND); `{"jobID", "status"}`. With an idempotency `key`, a start
        asked again returns the job it started; with `host`, it runs on that host of a cluster."""
        limits = {name: value for name, value in (("timeoutSeconds", timeout), ("memoryBytes", memory_bytes),
                                                  ("cpus", cpus)) if value is not None}
        return self._api.call("start", safe_to_repeat=key is not None, command=command, idempotencyKey=key,
                              limits=limits or None, env=env or None, labels=list(labels) or None, host=host)

    def stop(self, job_id: str) -> dict[str, Any]:
        """Stop the job and every process it started; `{"jobID", "status"}` once they are all gone."""
        return self._api.call("stop", safe_to_repeat=True, jobID=job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job, with all of its output so far."""
        answers = list(self.output_answers(job_id))
        return {**answers[-1], "output": "".join(answer["output"] for answer in answers)}

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job once it has ended, without its output; or as it is when `timeout` seconds have passed."""
        answer = self._wait(job_id, timeout)
        return {name: value for name, value in answer.items() if name not in _INTERNAL}

    def list(self, status: str | None = None, label: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Your jobs, newest first, without output; only those in `status` and with `label`, where given."""
        jobs: list[dict[str, Any]] = self._api.call("list", safe_to_repeat=True, status=status, label=label,
                                                    limit=limit)["jobs"]
        return jobs

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        """The job's output, piece by piece; with `follow`, as it comes, until the job has ended."""
        for answer in self.output_answers(job_id, follow):
            if answer["output"]:
                yield answer["output"]

    def output_answers(self, job_id: str, follow: bool = False) -> Iterator[dict[str, Any]]:
        """Status answers that together carry all of a job's output, each from where the last one ended; with
        `follow`, long polls until the job has ended and all of its output is read."""
        offset = 0
        while True:
            answer = self._api.call("status", safe_to_repeat=True, jobID=job_id, offset=offset,
                                    wait=MAX_WAIT_SECONDS if follow else 0)
            offset = answer["nextOffset"]
            yield answer
            if offset >= answer["outputBytes"] and (not follow or answer["status"] in FINAL_STATUSES):
                return

    def _wait(self, job_id: str, timeout: float | None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = MAX_WAIT_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            answer = self._api.call("status", safe_to_repeat=True, jobID=job_id, offset=_NO_OUTPUT,
                                    wait=min(remaining, MAX_WAIT_SECONDS))
            if answer["status"] in FINAL_STATUSES or remaining <= 0:
                return answer
