"""supervisord (PyPI `supervisor`) as a peer: a private instance driven over XML-RPC on plain loopback HTTP.

Programs are declared up front (supervisord cannot run an ad-hoc command): each is `/bin/sh -c COMMAND` as the
job user, in numbered copies so that every client process has a copy of its own to start and poll.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.http_client import HttpConnection, HttpError
from bench.load import Operation, OperationFactory
from bench.processes import terminate
from bench.workload import JOB_USER

_READY_SECONDS = 30.0
_STOP_SECONDS = 60.0
_FAILED_STATES = ("FATAL", "BACKOFF", "UNKNOWN")


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    copies: int
    log_bytes: str = "2MB"  # like workerctl's default cap on kept output

    def copy(self, index: int) -> str:
        """The XML-RPC name of one copy."""
        return f"{self.name}:{self.name}_{index:04d}"

    def section(self, directory: Path) -> str:
        return f"""
[program:{self.name}]
command=/bin/sh -c "{self.command}"
process_name=%(program_name)s_%(process_num)04d
numprocs={self.copies}
user={JOB_USER}
autostart=false
autorestart=false
startsecs=0
startretries=0
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={directory}/%(program_name)s_%(process_num)04d.log
stdout_logfile_maxbytes={self.log_bytes}
stdout_logfile_backups=1
"""


def _without_pythonpath() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def free_port() -> int:
    """A loopback port free at this moment (supervisord cannot be told to pick one itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class XmlRpc:
    """supervisord's XML-RPC interface over one kept-alive connection."""

    def __init__(self, port: int) -> None:
        self.connection = HttpConnection(port, None, path="/RPC2", headers={"Content-Type": "text/xml"})

    def call(self, method: str, *params: Any) -> Any:
        answer = self.connection.post(xmlrpc.client.dumps(params, method).encode())
        return xmlrpc.client.loads(answer)[0][0]

    def state(self, process: str) -> str:
        state = self.call("supervisor.getProcessInfo", process)["statename"]
        if state in _FAILED_STATES:
            raise RuntimeError(f"supervisord's {process} is {state}")
        return str(state)

    def wait_state(self, process: str, wanted: str, timeout: float, interval: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state(process) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord's {process} did not become {wanted} within {timeout:g} s")
            time.sleep(interval)

    def close(self) -> None:
        self.connection.close()


class Supervisord:
    """A private supervisord with the given programs; use as a context manager."""

    def __init__(self, directory: Path, programs: list[Program], min_fds: int = 1024) -> None:
        # Each child closes every descriptor below min_fds before it execs, so keep it at the default (1024)
        # unless the programs need more.
        self.min_fds = min_fds
        self.directory = directory
        self.programs = {program.name: program for program in programs}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Supervisord:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.directory / "supervisord.conf"
        config.write_text(self._config())
        with open(self.directory / "supervisord.out", "wb") as log:
            # Its own entry point, from elsewhere than the checkout: workerctl's supervisor/ folder would
            # shadow the `supervisor` package for `python -m` run from the checkout.
            self.process = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(config)],
                                            cwd=self.directory, env=_without_pythonpath(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + _READY_SECONDS
        while True:
            try:
                rpc = XmlRpc(self.port)
                rpc.call("supervisor.getState")
                rpc.close()
                return self
            except (HttpError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("supervisord did not start; see " + str(self.directory)) from None
                time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            terminate(self.process, _STOP_SECONDS)  # supervisord stops its programs, then exits

    def kill(self) -> None:
        """End supervisord and its programs at once, rather than wait for it to stop them one by one."""
        if self.process is None or self.process.poll() is not None:
            return
        daemon = self.server_process()
        for child in daemon.children(recursive=True):
            child.kill()
        daemon.kill()
        self.process.wait()

    def _config(self) -> str:
        return f"""
[supervisord]
nodaemon=true
logfile={self.directory}/supervisord.log
pidfile={self.directory}/supervisord.pid
childlogdir={self.directory}
loglevel=warn
minfds={self.min_fds}
minprocs={max(200, self.min_fds)}

[inet_http_server]
port=127.0.0.1:{self.port}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
""" + "".join(program.section(self.directory) for program in self.programs.values())

    def connect(self) -> XmlRpc:
        return XmlRpc(self.port)

    def server_process(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def run_operation(self, program: str) -> OperationFactory:
        """Start the client's own copy of `program` and poll until it has exited."""
        def factory(index: int) -> Operation:
            rpc = self.connect()
            name = self.programs[program].copy(index)

            def start_and_wait() -> None:
                rpc.call("supervisor.startProcess", name, False)
                rpc.wait_state(name, "EXITED", timeout=30.0)
            return start_and_wait
        return factory

    def info_operation(self, program: str) -> OperationFactory:
        def factory(_index: int) -> Operation:
            rpc = self.connect()
            name = self.programs[program].copy(0)

            def get_process_info() -> None:
                rpc.call("supervisor.getProcessInfo", name)
            return get_process_info
        return factory
