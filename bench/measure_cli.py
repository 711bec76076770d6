"""Wall time of a status command run from the shell, start-up included.

- `cli.wall_ms.python`: `python -c pass`, the interpreter alone.
- `cli.wall_ms.fire`: Fire alone, imported as the CLI imports it for the server's commands (`import fire`); a
  job command such as status imports none of it.
- `cli.wall_ms.imports`: what `workerctl status` imports: workerctl.cli.main and the job commands.
- `cli.wall_ms.floor`: bench/floor_cli.py, a stdlib script making the same one status request.
- `cli.wall_ms.workerctl`: `workerctl status ID`.
- `cli.wall_ms.tsp`: `tsp -s ID`, task-spooler's status (a C program on a Unix socket).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.contenders import Contenders
from bench.rounds import Round
from bench.stats import percentile
from bench.workload import TRIVIAL_COMMAND

FLOOR_CLI = Path(__file__).resolve().parent / "floor_cli.py"
_CALL_SECONDS = 30.0


def _timed(command: list[str], environment: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=_CALL_SECONDS)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return seconds


def measure_cli(contenders: Contenders, round_: Round) -> None:
    api = contenders.workerctl.connect()
    job_id = api.start(TRIVIAL_COMMAND)
    api.wait_status(job_id, ("finished",))
    api.close()
    tsp_job = contenders.tsp.run_to_end(TRIVIAL_COMMAND)
    python = sys.executable
    commands = {
        "python": [python, "-c", "pass"],
        "fire": [python, "-c", "import fire"],
        "imports": [python, "-c", "import workerctl.cli.main, workerctl.cli.job_commands"],
        "floor": [python, str(FLOOR_CLI), job_id],
        "workerctl": [str(Path(python).parent / "workerctl"), "status", job_id],
        "tsp": ["tsp", "-s", tsp_job],
    }
    environment = {**contenders.workerctl.cli_environment(), **contenders.tsp.environment}
    check = subprocess.run(commands["workerctl"], env=environment, capture_output=True, text=True,
                           timeout=_CALL_SECONDS)
    if "status: finished" not in check.stdout:
        raise RuntimeError(f"workerctl status printed {check.stdout!r} {check.stderr!r}")
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for repetition in range(contenders.settings.cli_runs):
        for name in round_.rotated(list(commands), repetition):
            walls[name].append(_timed(commands[name], environment))
    for name, samples in walls.items():
        round_.put(f"cli.wall_ms.{name}", percentile(samples, 0.5) * 1000)
