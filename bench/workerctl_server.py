"""workerctl as a contender: a server started as `python -m workerctl serve` on a free loopback port with a
fresh data directory, the API calls the benchmark makes, and the server's own processes (not the jobs'), which
a cluster's agent (bench/cluster_peers.py) shares with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.http_client import HttpConnection
from bench.load import Operation, OperationFactory
from bench.material import Credentials
from bench.processes import terminate, wait_for_log
from bench.workload import TRIVIAL_COMMAND

FINAL_STATUSES = ("finished", "stopped", "error")
NO_OUTPUT = 2**62  # an offset past any output: status then wakes only on a new status (as `workerctl wait` does)
MAX_WAIT_SECONDS = 30.0
JOB_TAG = "WORKERCTL_JOB_ID"  # in the environment of every process of a job
_READY_SECONDS = 30.0
_SHORT_WAIT_SECONDS = 0.02
_STOP_SECONDS = 60.0


def host_flags(data_dir: Path, job_timeout: float = 60.0, max_jobs: int = 2000) -> list[str]:
    """The flags of a supervisor's host, `serve`'s or an agent's: its data directory and the benchmark's limits."""
    return ["--data-dir", str(data_dir), "--job-timeout", f"{job_timeout:g}", "--max-jobs", str(max_jobs),
            "--max-jobs-per-user", str(max_jobs),
            # One user runs every job: room for 1,000 sleeping jobs of four processes each.
            "--user-processes", "100000"]


class SupervisorHost:
    """A running workerctl command that runs a supervisor (`serve`, or a cluster's `agent`): its log, its own
    processes and its jobs' apart, and its stop."""

    def __init__(self, directory: Path, log_name: str) -> None:
        self.directory = directory
        self.log_path = directory / log_name
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self, command: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_log(self, pattern: str) -> re.Match[str]:
        return wait_for_log(self.log_path, pattern, _READY_SECONDS, self.running)

    def stop(self) -> float:
        """SIGTERM it (it ends every job first); the seconds it took to exit."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        began = time.monotonic()
        if not terminate(self.process, _STOP_SECONDS):
            raise RuntimeError(f"{self.log_path.stem} did not stop within {_STOP_SECONDS:g} s")
        return time.monotonic() - began

    def server_processes(self) -> list[psutil.Process]:
        """The command's process and its children (serve's: the front end and the supervisor; an agent's: the
        supervisor, the relay and the guard); not multiprocessing's resource tracker, and not the jobs (they are
        the supervisor's children)."""
        assert self.process is not None
        command = psutil.Process(self.process.pid)
        children = [child for child in command.children(recursive=False)
                    if not any("resource_tracker" in part for part in _cmdline(child))]
        return [command, *children]

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
        return psutil.Process(int(self.wait_for_log(r"supervisor\[(\d+)\]: supervisor ready").group(1)))


class WorkerctlServer(SupervisorHost):
    """One running `workerctl serve`, or with `cluster` (a Redis URL) a front end of that cluster, which runs no
    supervisor; use as a context manager, or call start() and stop()."""

    def __init__(self, credentials: Credentials, directory: Path, *, job_timeout: float = 60.0,
                 max_jobs: int = 2000, cluster: str | None = None, extra: tuple[str, ...] = ()) -> None:
        super().__init__(directory, "serve.log")
        self.credentials = credentials
        self.command = [sys.executable, "-m", "workerctl", "serve", "--port", "0", "--users", str(credentials.users),
                        "--cert", str(credentials.cert), "--key", str(credentials.key), "--log-level", "WARNING",
                        *(host_flags(directory / "data", job_timeout, max_jobs) if cluster is None
                          else ["--cluster", cluster]),
                        "--rate-limit", "0",  # the benchmark's clients are one user, as fast as they can go
                        *extra]
        self.port = 0

    def __enter__(self) -> WorkerctlServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.launch(self.command)
        # Announced at every log level, once the front end is connected to the supervisor: ready for jobs.
        self.port = int(self.wait_for_log(r"serving https://127\.0\.0\.1:(\d+)").group(1))
        # The user's first job makes and mounts their home, once per server: not what a job costs.
        api = self.connect()
        api.wait_status(api.start("true"), FINAL_STATUSES)
        api.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cli_environment(self) -> dict[str, str]:
        """The environment in which `workerctl status ID` reaches this server."""
        return {**os.environ, "WORKERCTL_SERVER": self.url, "WORKERCTL_TOKEN_FILE": str(self.credentials.token_file),
                "WORKERCTL_CA": str(self.credentials.ca), "PAGER": "cat"}

    def front_end_and_supervisor(self) -> dict[str, psutil.Process]:
        """serve's two children, by name."""
        supervisor = self.supervisor().pid
        return {"supervisor" if process.pid == supervisor else "front end": process
                for process in self.server_processes()[1:]}

    def connect(self, keep_alive: bool = True) -> WorkerctlApi:
        return WorkerctlApi(HttpConnection(self.port, self.credentials.client_context(),
                                           headers={"Authorization": f"Bearer {self.credentials.token}",
                                                    "Content-Type": "application/json"},
                                           keep_alive=keep_alive))


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


def finished_job(server: WorkerctlServer, command: str = TRIVIAL_COMMAND) -> str:
    """The ID of a job run to its end, for status to answer about."""
    api = server.connect()
    job_id = api.start(command)
    api.wait_status(job_id, ("finished",))
    api.close()
    return job_id


def status_operation(server: WorkerctlServer, job_id: str) -> OperationFactory:
    """Each client asks for the job's status over a kept-alive connection of its own."""
    body = json.dumps({"action": "status", "jobID": job_id}).encode()

    def factory(_index: int) -> Operation:
        connection = server.connect().connection
        return lambda: connection.post(body)
    return factory


def jobs_operation(server: WorkerctlServer, command: str = TRIVIAL_COMMAND) -> OperationFactory:
    """Each client starts a job and waits until it has finished, over a kept-alive connection of its own."""
    def factory(_index: int) -> Operation:
        api = server.connect()
        return lambda: api.wait_status(api.start(command), ("finished",))
    return factory
