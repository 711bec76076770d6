"""The contenders of one round, started fresh together and stopped together: a workerctl server, the minimal
HTTPS floor server, a task-spooler queue and a supervisord, each in a directory of its own."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.floors import FloorHttpsServer
from bench.material import Credentials
from bench.supervisord_peer import Program, Supervisord
from bench.tsp_peer import TaskSpooler
from bench.workerctl_server import WorkerctlServer
from bench.workload import FLOOD_COMMAND, SLEEPER_COMMAND, TRIVIAL_COMMAND

MAX_CLIENTS = 16


@dataclass(frozen=True)
class Settings:
    """How long and how much each part measures."""

    window_seconds: float = 2.0  # each load window
    stops: int = 15  # stop latencies per contender per round
    cli_runs: int = 8  # CLI invocations per command per round
    timeout_jobs: int = 200  # jobs timing out together
    sleeping_jobs: int = 1000
    usage_seconds: float = 5.0  # window for RSS and CPU of the idle servers

    @classmethod
    def quick(cls) -> Settings:
        """A smoke test of every part in about a minute; its figures mean little."""
        return cls(window_seconds=0.5, stops=3, cli_runs=2, timeout_jobs=20, sleeping_jobs=50, usage_seconds=1.0)


@dataclass(frozen=True)
class Contenders:
    directory: Path
    credentials: Credentials
    settings: Settings
    workerctl: WorkerctlServer
    workerctl_unsandboxed: WorkerctlServer  # the same with --sandbox off: what the sandbox costs
    floor_https: FloorHttpsServer
    tsp: TaskSpooler
    supervisord: Supervisord


def start_contenders(stack: ExitStack, directory: Path, credentials: Credentials, settings: Settings) -> Contenders:
    """Start every contender; `stack` stops them."""
    return Contenders(
        directory, credentials, settings,
        workerctl=stack.enter_context(WorkerctlServer(credentials, directory / "workerctl")),
        workerctl_unsandboxed=stack.enter_context(WorkerctlServer(credentials, directory / "workerctl-unsandboxed",
                                                                  extra=("--sandbox", "off"))),
        floor_https=stack.enter_context(FloorHttpsServer(credentials)),
        tsp=stack.enter_context(TaskSpooler(directory / "tsp", slots=MAX_CLIENTS)),
        supervisord=stack.enter_context(Supervisord(directory / "supervisord", [
            Program("trivial", TRIVIAL_COMMAND, MAX_CLIENTS),
            Program("sleeper", SLEEPER_COMMAND, 1),
            Program("flood", FLOOD_COMMAND, 1),
        ])),
    )
