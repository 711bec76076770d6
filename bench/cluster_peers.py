"""A workerctl cluster on this machine, for the benchmark: a redis-server of its own (its append-only file synced
at every write, as docs/architecture.md asks of production), and on it clusters of agents (`workerctl agent`,
each a host with a data directory of its own) and one front end each (`workerctl serve --cluster`), told apart
by their key prefix. Every part is a context manager that stops what it started."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import redis
from workerctl.cluster.hosts import ClusterKeys

from bench.material import Credentials
from bench.processes import terminate, wait_for_log
from bench.workerctl_server import FINAL_STATUSES, SupervisorHost, WorkerctlServer, host_flags

_PORT_ATTEMPTS = 5
_READY_SECONDS = 30.0
_STOP_SECONDS = 30.0


class RedisServer:
    """redis-server on a free loopback port, with a password and a directory of its own. `appendfsync` is
    Redis's policy: `always`, what production needs, or `everysec`, to see what syncing every write costs."""

    def __init__(self, directory: Path, appendfsync: str = "always") -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian and Ubuntu: apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        # redis-server cannot be handed a bound socket: take a free port, and another if it was taken meanwhile.
        for _ in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            log.unlink(missing_ok=True)
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--requirepass", self.password, "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
                 "--logfile", log.name, "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches the agents, which then still record their jobs' ends
            try:
                wait_for_log(log, "Ready to accept connections", _READY_SECONDS, self.running)
                return self
            except RuntimeError:
                self.__exit__()
                if "Address already in use" not in log.read_text(errors="replace"):
                    raise
        raise RuntimeError(f"redis-server found no free port in {_PORT_ATTEMPTS} attempts")

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            terminate(self.process, _STOP_SECONDS)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, prefix: str) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0?prefix={prefix}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def server_process(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Agent(SupervisorHost):
    """One running `workerctl agent`: a host of the cluster at `url`, named `name`."""

    def __init__(self, directory: Path, url: str, name: str) -> None:
        super().__init__(directory, "agent.log")
        self.name = name
        self.command = [sys.executable, "-m", "workerctl", "agent", "--cluster", url, "--name", name, "--log-level",
                        "WARNING", *host_flags(directory / "data")]

    def __enter__(self) -> Agent:
        self.launch(self.command)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> float:
        """SIGTERM the agent (it ends every job first), then wait for its guard, which ends what jobs left once
        the agent is gone and unmounts their homes: only then is the data directory free."""
        own = self.server_processes() if self.running() else []
        try:
            return super().stop()
        finally:
            _, alive = psutil.wait_procs(own, _STOP_SECONDS)
            for process in alive:  # stuck for that long: it would keep the data directory busy
                process.kill()


class Cluster:
    """`agents` agents and a front end on `redis_server` under a prefix of their own, started together; each
    agent has run a job before it is measured (its user's home is made at the first)."""

    def __init__(self, redis_server: RedisServer, credentials: Credentials, directory: Path, agents: int) -> None:
        self.redis_server = redis_server
        self.credentials = credentials
        self.directory = directory
        self.prefix = f"bench-{secrets.token_hex(4)}"
        self.names = [f"agent-{number + 1}" for number in range(agents)]
        self.agents: list[Agent] = []
        self._stack = ExitStack()

    def __enter__(self) -> Cluster:
        url = self.redis_server.url(self.prefix)
        with ExitStack() as stack:
            self.agents = [stack.enter_context(Agent(self.directory / name, url, name)) for name in self.names]
            self._wait_for_leases()
            self.front_end = stack.enter_context(WorkerctlServer(self.credentials, self.directory / "front-end",
                                                                 cluster=url))
            api = self.front_end.connect()
            for name in self.names:
                api.wait_status(api.call("start", command="true", host=name)["jobID"], FINAL_STATUSES)
            api.close()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()  # the front end first, then the agents

    def _wait_for_leases(self) -> None:
        """Until every agent's relay holds its lease: the front end places jobs only on such hosts."""
        keys = ClusterKeys(self.prefix)
        deadline = time.monotonic() + _READY_SECONDS
        with self.redis_server.client() as client:
            while not all(client.exists(keys.lease(name)) for name in self.names):
                for agent in self.agents:
                    if not agent.running():
                        raise RuntimeError(f"agent {agent.name} exited; its log ends:\n"
                                           f"{agent.log_path.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the agents held no lease after {_READY_SECONDS:g} s")
                time.sleep(0.05)

    def cpu_parts(self) -> dict[str, list[psutil.Process]]:
        """The cluster's own processes by part: the front end, the agents' supervisors, the rest of the agents
        (the relay, the agent process itself and its guard) and redis-server; not the jobs."""
        supervisors = [agent.supervisor() for agent in self.agents]
        supervisor_pids = {process.pid for process in supervisors}
        return {"front end": self.front_end.server_processes(),
                "supervisor": supervisors,
                "relay": [process for agent in self.agents for process in agent.server_processes()
                          if process.pid not in supervisor_pids],
                "redis-server": [self.redis_server.server_process()]}
