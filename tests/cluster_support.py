"""A cluster on one machine for the tests: agents (`workerctl agent`, each its own host with its own data directory,
cgroups and sandboxes) on a real redis-server, and front ends (`workerctl serve --cluster`) talked to over HTTPS.
The `cluster` fixture (conftest.py) starts one per test module with `start_cluster`."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from facilities import missing_module
from redis_server import RedisServer
from support import Server, Tls, Users, poll_until, reachable_by_jobs, start_server


def celery_problem() -> str | None:
    """Why there can be no cluster here, or None."""
    return missing_module("celery", "pip install -e '.[cluster]'")


@dataclass
class Agent:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def relay_pid(self) -> int:
        """The pid of the agent's relay (its Celery worker), as its log names it."""
        return int(re.search(r"relay\[(\d+)\]", self.log()).group(1))

    def kill_group(self) -> None:
        """kill -9 of the agent's whole process group: the agent, its supervisor and its relay at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def start_agent(directory: Path, url: str, name: str, *extra: str, host_timeout: float = 3) -> Agent:
    data_dir = reachable_by_jobs(directory) / f"data-{name}"
    log_path = directory / f"agent-{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workerctl", "agent", "--cluster", url, "--name", name, "--data-dir", str(data_dir),
             "--job-timeout", "20", "--kill-grace", "0.5", "--host-timeout", str(host_timeout), "--log-level", "INFO",
             *extra],
            stdout=log, stderr=log, start_new_session=True)
    agent = Agent(name, process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"agent {name} exited with {process.returncode}:\n{agent.log()}")
        return "connected to the supervisor" in agent.log() and re.search(rf"{name}@workerctl ready", agent.log())

    try:
        poll_until(ready, 30, message=f"agent {name} to be ready")
    except BaseException:  # not ready: stopped here, as the caller has no agent to stop
        agent.stop()
        raise
    return agent


@dataclass
class Cluster:
    url: str
    agents: dict[str, Agent]
    front_ends: list[Server]


@contextmanager
def start_cluster(directory: Path, tls: Tls, users: Users, redis_server: RedisServer,
                  *agent_flags: str) -> Iterator[Cluster]:
    """Two agents, h1 and h2 (with `agent_flags`), and two front ends, under a key prefix of their own."""
    url = redis_server.url(prefix=f"cluster-{secrets.token_hex(6)}")
    agents: dict[str, Agent] = {}
    front_ends: list[Server] = []
    try:
        for name in ("h1", "h2"):
            agents[name] = start_agent(directory, url, name, *agent_flags)
        for index in range(2):
            front_ends.append(start_server(directory / f"front-{index}", tls, users, "--cluster", url))
        yield Cluster(url, agents, front_ends)
    finally:
        for front_end in front_ends:
            front_end.stop()
        for agent in agents.values():
            agent.stop()
