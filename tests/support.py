"""Helpers for the tests: real servers started as `python -m workerctl serve` on 127.0.0.1, talked to over
real HTTPS with certificate checks on, and ways to find processes and wait for conditions."""


from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme
from facilities import needs

SERVE_START_SECONDS = 20.0


def poll_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Return the first truthy value of `predicate()`, failing the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def mint_tls(directory: Path) -> Tls:
    """A throwaway CA and a server certificate from it for 127.0.0.1 and localhost, written to `directory`."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Tls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    server_cert.cert_chain_pems[0].write_to_path(str(paths.cert))
    server_cert.private_key_pem.write_to_path(str(paths.key))
    return paths


@dataclass(frozen=True)
class Users:
    file: Path
    tokens: dict[str, str]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Server:
    """A running `workerctl serve` and a way to talk to it."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, data_dir: Path, port: int, tls: Tls,
                 users: Users) -> None:
        self.process = process
        self.log_path = log_path
        self.data_dir = data_dir
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.tls = tls
        self.users = users

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def raw(self, method: str = "POST", body: bytes | None = None, headers: dict[str, str] | None = None,
            path: str = "/") -> Answer:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls.client_context(),
                                                 timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            parsed = json.loads(data) if data and method != "HEAD" else {}
            return Answer(response.status, parsed, dict(response.getheaders()))
        finally:
            connection.close()

    def call(self, action: str, user: str = "alice", **fields: Any) -> Answer:
        body = {"action": action, "token": self.users.tokens[user], **fields}
        return self.raw(body=json.dumps(body).encode())

    def start(self, command: str, user: str = "alice", **fields: Any) -> str:
        answer = self.call("start", user, command=command, **fields)
        assert answer.status == 200, answer.body
        return answer.body["jobID"]

    def status(self, job_id: str, user: str = "alice", **fields: Any) -> dict[str, Any]:
        answer = self.call("status", user, jobID=job_id, **fields)
        assert answer.status == 200, answer.body
        return answer.body

    def wait_final(self, job_id: str, user: str = "alice", timeout: float = 15.0) -> dict[str, Any]:
        return poll_until(lambda: (lambda s: s if s["status"] in ("finished", "stopped", "error") else None)(
            self.status(job_id, user)), timeout, message=f"job {job_id} to end")

    def wait_running(self, job_id: str, user: str = "alice") -> dict[str, Any]:
        return poll_until(lambda: (lambda s: s if s["status"] == "running" else None)(self.status(job_id, user)),
                          message=f"job {job_id} to run")

    def child_pid(self, name: str) -> int:
        """The pid of the server's process `name` ("web" or "supervisor"), from its start-up log line."""
        pattern = {"web": r"web\[(\d+)\]: serving https://",
                   "supervisor": r"supervisor\[(\d+)\]: supervisor ready"}[name]
        return int(re.findall(pattern, self.log())[-1])

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def reachable_by_jobs(directory: Path) -> Path:
    """Open `directory` and those above it up to /tmp for traversal by other users, as jobs run as other
    users and must reach their working directories in the server's data directory; pytest makes them 0700."""
    directory.mkdir(parents=True, exist_ok=True)
    for ancestor in [directory, *directory.parents]:
        if ancestor == Path("/tmp") or ancestor == Path(ancestor.anchor):
            break
        ancestor.chmod(ancestor.stat().st_mode | 0o111)
    return directory


def start_server(tmp_path: Path, tls: Tls, users: Users, *extra: str, data_dir: Path | None = None,
                 ready: bool = True, env: dict[str, str] | None = None) -> Server:
    data_dir = data_dir or reachable_by_jobs(tmp_path) / "data"
    log_path = tmp_path / f"serve-{uuid.uuid4().hex[:8]}.log"
    command = [sys.executable, "-m", "workerctl", "serve", "--port", "0", "--cert", str(tls.cert), "--key",
               str(tls.key), "--users", str(users.file), "--data-dir", str(data_dir), "--job-timeout", "20",
               "--kill-grace", "0.5", "--log-level", "INFO", *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, **(env or {})})
    if not ready:
        return Server(process, log_path, data_dir, 0, tls, users)

    def served_port() -> int | None:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
        found = re.search(r"serving https://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    try:
        port = poll_until(served_port, SERVE_START_SECONDS, message="the server to start")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Server(process, log_path, data_dir, port, tls, users)


def marker() -> str:
    """A unique `sleep` argument: processes started with it can be found in the process table."""
    return f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**9:09d}"


def processes_with(mark: str) -> list[psutil.Process]:
    """Live processes whose command line has `mark`, leaving out those already on their way out (killed, say,
    and not yet torn down by the kernel: they run nothing more)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status", "name"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and mark in " ".join(process.info["cmdline"] or ()) \
                and not _exiting(process.pid):
            found.append(process)
    return found


_PF_EXITING = 0x4


def _exiting(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    flags = int(stat.rsplit(")", 1)[1].split()[6])  # the 9th field, counted after the command's name
    return bool(flags & _PF_EXITING)


def sleepers(mark: str) -> list[psutil.Process]:
    """The `sleep` processes started with `mark` (not the shells that started them)."""
    return [process for process in processes_with(mark) if process.info["name"] == "sleep"]


def kill_all(mark: str) -> None:
    """SIGKILL every process started with `mark`, where a test ends them rather than wait for the server to."""
    for process in processes_with(mark):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def release(mark: str) -> None:
    """Let a job held at its `sleep MARK` go on: interrupt that sleep, and its shell runs the next command (and
    says nothing of it, as it would of a SIGTERM). For output in two parts, with the test's own moment between."""
    for process in poll_until(lambda: sleepers(mark), message=f"the job to reach its sleep {mark}"):
        process.send_signal(signal.SIGINT)


def assert_none_left(mark: str) -> None:
    """No process started with `mark` runs now: for a job that has ended, or been answered as stopped."""
    left = processes_with(mark)
    assert not left, f"processes outlived their job: {[(p.pid, p.cmdline()) for p in left]}"


def wait_none_left(mark: str, timeout: float = 20.0) -> None:
    """Every process started with `mark` is gone within `timeout` seconds: for what nothing can be waited on."""
    poll_until(lambda: not processes_with(mark), timeout, message=f"every process with {mark} to be gone")


def cgroups_of(data_dir: Path) -> list[Path]:
    """The cgroups named after the server of `data_dir`, in every hierarchy (a server started from here makes
    them under this process's own cgroup in each)."""
    from workerctl.store.layout import DataLayout

    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        kind, _, options = (after.split() + ["", "", ""])[:3]
        if kind == "cgroup2":
            path = own.get("")
        elif kind == "cgroup":
            path = next((path for controllers, path in own.items()
                         if controllers and set(controllers.split(",")) <= set(options.split(","))), None)
        else:
            continue
        if path is not None:
            cgroup = Path(before.split()[4]) / path / f"workerctl-{DataLayout(data_dir).instance}"
            if cgroup.exists():
                found.append(cgroup)
    return found


def mounts_under(directory: Path) -> list[str]:
    """The mount points under `directory` (a server's data directory: its users' homes while mounted)."""
    prefix = f"{directory.resolve()}/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def connected_to(pid: int, port: int) -> bool:
    """Whether the process `pid` has a TCP connection to `port` on this host."""
    try:
        return any(connection.raddr and connection.raddr.port == port and connection.status == "ESTABLISHED"
                   for connection in psutil.Process(pid).net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def require_namespaces() -> None:
    """The "sandbox" facility (facilities.py): skip the test where this machine cannot give jobs namespaces (not
    root, or no helper, or the kernel), or fail it where the sandbox is required (CI)."""
    from workerctl.supervisor.sandbox import HELPER, Sandbox

    helper = HELPER if os.access(HELPER, os.X_OK) else None
    needs("sandbox", Sandbox(True, "none", (), helper, None).problem())
