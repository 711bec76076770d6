"""workerctl as a contender: a server started as `python -m workerctl serve` on a free loopback port with a
fresh data directory, the API calls the benchmark makes, and the server's own processes (not the jobs')."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.http_client import HttpConnection
from bench.material import Credentials
from bench.processes import wait_for_log

FINAL_STATUSES = ("finished", "stopped", "error")
NO_OUTPUT = 2**62  # an offset past any output: status then wakes only on a new status (as `workerctl wait` does)
MAX_WAIT_SECONDS = 30.0
JOB_TAG = "WORKERCTL_JOB_ID"  # in the environment of every process of a job
_READY_SECONDS = 30.0
_SHORT_WAIT_SECONDS = 0.02
_STOP_SECONDS = 60.0


class WorkerctlServer:
    """One running `workerctl serve`; use as a context manager, or call start() and stop()."""

    def __init__(self, credentials: Credentials, directory: Path, *, job_timeout: float = 60.0,
                 max_jobs: int = 2000, extra: tuple[str, ...] = ()) -> None:
        self.credentials = credentials
        self.directory = directory
        self.log_path = directory / "serve.log"
        self.command = [sys.executable, "-m", "workerctl", "serve", "--port", "0", "--data-dir",
                        str(directory / "data"), "--users", str(credentials.users), "--cert", str(credentials.cert),
                        "--key", str(credentials.key), "--job-timeout", f"{job_timeout:g}", "--max-jobs",
                        str(max_jobs), "--max-jobs-per-user", str(max_jobs), "--log-level", "WARNING",
                        # One user runs every job: room for 1,000 sleeping jobs of four processes each.
                        "--user-processes", "100000",
                        "--rate-limit", "0",  # the benchmark's clients are one user, as fast as they can go
                        *extra]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> WorkerctlServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        # Announced at every log level, once the front end is connected to the supervisor: ready for jobs.
        found = wait_for_log(self.log_path, r"serving https://127\.0\.0\.1:(\d+)", _READY_SECONDS,
                             lambda: self.process is not None and self.process.poll() is None)
        self.port = int(found.group(1))
        # The user's first job makes and mounts their home, once per server: not what a job costs.
        api = self.connect()
        api.wait_status(api.start("true"), FINAL_STATUSES)
        api.close()

    def stop(self) -> float:
        """SIGTERM the server (it ends every job first); the seconds it took to exit."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"workerctl serve did not stop within {_STOP_SECONDS:g} s") from None
        return time.monotonic() - began

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cli_environment(self) -> dict[str, str]:
        """The environment in which `workerctl status ID` reaches this server."""
        return {**os.environ, "WORKERCTL_SERVER": self.url, "WORKERCTL_TOKEN_FILE": str(self.credentials.token_file),
                "WORKERCTL_CA": str(self.credentials.ca), "PAGER": "cat"}

    def connect(self, keep_alive: bool = True) -> WorkerctlApi:
        return WorkerctlApi(HttpConnection(self.port, self.credentials.client_context(),
                                           headers={"Authorization": f"Bearer {self.credentials.token}",
                                                    "Content-Type": "application/json"},
                                           keep_alive=keep_alive))

    def server_processes(self) -> list[psutil.Process]:
        """serve and its two children, the front end and the supervisor; not multiprocessing's resource tracker,
        and not the jobs (they are the supervisor's children)."""
        assert self.process is not None
        serve = psutil.Process(self.process.pid)
        children = [child for child in serve.children(recursive=False)
                    if not any("resource_tracker" in part for part in _cmdline(child))]
        return [serve, *children]

    def job_processes(self) -> dict[str, list[psutil.Process]]:
        """The live processes of each running job, by job ID: the supervisor's descendants, told apart by the tag
        workerctl puts in every job's environment."""
        found: dict[str, list[psutil.Process]] = {}
        for process in self.supervisor().children(recursive=True):
            try:
                job_id = process.environ().get(JOB_TAG)
            except psutil.Error:  # gone, or a zombie
                continue
            if job_id:
                found.setdefault(job_id, []).append(process)
        return found

    def supervisor(self) -> psutil.Process:
        assert self.process is not None
        found = wait_for_log(self.log_path, r"supervisor\[(\d+)\]: supervisor ready", _READY_SECONDS,
                             lambda: self.process is not None and self.process.poll() is None)
        return psutil.Process(int(found.group(1)))


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except psutil.Error:
        return []


class WorkerctlApi:
    """The API calls the benchmark makes, over one connection."""

    def __init__(self, connection: HttpConnection) -> None:
        self.connection = connection

    def call(self, action: str, **fields: Any) -> dict[str, Any]:
        return self.connection.post_json({"action": action, **fields})

    def start(self, command: str) -> str:
        job_id = self.call("start", command=command)["jobID"]
        assert isinstance(job_id, str)
        return job_id

    def wait_status(self, job_id: str, wanted: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
        """Long-poll until the job's status is one of `wanted`; RuntimeError after `timeout` seconds."""
        # A long poll returns at a final status, or at a change from the status the job had when the poll began:
        # a non-final status reached just before would go unseen for the whole wait, so poll briefly for those.
        longest_wait = MAX_WAIT_SECONDS if set(wanted) <= set(FINAL_STATUSES) else _SHORT_WAIT_SECONDS
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            answer = self.call("status", jobID=job_id, offset=NO_OUTPUT,
                               wait=max(0.0, min(remaining, longest_wait)))
            if answer["status"] in wanted:
                return answer
            if answer["status"] in FINAL_STATUSES:
                raise RuntimeError(f"job {job_id} ended {answer['status']} (exit code {answer['exitCode']}, "
                                   f"reason {answer['reason']!r}, output {answer['output'][:200]!r})")
            if remaining <= 0:
                raise RuntimeError(f"job {job_id} is still {answer['status']} after {timeout:g} s")

    def run_to_end(self, command: str) -> dict[str, Any]:
        return self.wait_status(self.start(command), FINAL_STATUSES)

    def close(self) -> None:
        self.connection.close()
