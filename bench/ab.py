"""Two builds of workerctl side by side, on this machine, now: `python -m bench.ab DIR` (as root) compares the
checkout with the build installed in DIR (`pip install --no-deps --target DIR <other checkout>`). The checkout
is installed the same way first, so that both are regular installs and only the code differs.

A ratio against a floor moves with the machine's state from one day to the next; two builds measured in turns,
in the same minutes, do not. For each of a few rounds, in an order that alternates, it measures status answers
per second and trivial jobs per second at 4 clients, the lateness of 200 jobs ended by their time limit, and the
wall time of `workerctl status ID`; it prints the medians and every round as markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deps import REPOSITORY  # noqa: E402
from bench.load import run_load  # noqa: E402
from bench.material import Credentials, make_credentials  # noqa: E402
from bench.measure_limits import measure_time_limit  # noqa: E402
from bench.rounds import Round  # noqa: E402
from bench.workerctl_server import WorkerctlServer, finished_job, jobs_operation, status_operation  # noqa: E402

_CLIENTS = 4
_WINDOW_SECONDS = 3.0
_CLI_RUNS = 15
BUILDS = ("this checkout", "the other build")


@contextmanager
def _build(site: Path) -> Iterator[None]:
    """Servers and commands started inside this block run the build installed in `site`."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(site)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _cli_wall_ms(server: WorkerctlServer, job_id: str) -> float:
    command = [str(Path(sys.executable).parent / "workerctl"), "status", job_id]
    walls = []
    for _ in range(_CLI_RUNS):
        began = time.monotonic()
        subprocess.run(command, env=server.cli_environment(), check=True, capture_output=True)
        walls.append((time.monotonic() - began) * 1000)
    return statistics.median(walls)


def _lateness_p99_ms(credentials: Credentials, directory: Path) -> float:
    contenders = types.SimpleNamespace(settings=types.SimpleNamespace(timeout_jobs=200), credentials=credentials,
                                       directory=directory)
    round_ = Round(0)
    measure_time_limit(contenders, round_)  # type: ignore[arg-type]
    return round_.get("timelimit.p99_ms.workerctl")


def _install_checkout(directory: Path) -> Path:
    source = directory / "source"  # a copy: the build's own directory stays out of the checkout
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "docs"))
    site = directory / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(source)], check=True, capture_output=True)
    return site


def compare(other: Path, rounds: int) -> str:
    directory = Path(tempfile.mkdtemp(prefix="workerctl-ab-"))
    directory.chmod(0o711)  # jobs run as other users reach their working directories under it
    credentials = make_credentials(directory)
    sites = {BUILDS[0]: _install_checkout(directory), BUILDS[1]: other}
    figures: dict[str, dict[str, list[float]]] = {build: {} for build in BUILDS}

    def record(build: str, name: str, value: float) -> None:
        figures[build].setdefault(name, []).append(value)

    for number in range(rounds):
        for build in (BUILDS if number % 2 == 0 else BUILDS[::-1]):
            with _build(sites[build]):
                with WorkerctlServer(credentials, directory / f"{number}-{build.replace(' ', '-')}") as server:
                    job_id = finished_job(server)
                    record(build, "status answers/s", run_load(status_operation(server, job_id), _CLIENTS,
                                                               _WINDOW_SECONDS).rate)
                    record(build, "trivial jobs/s", run_load(jobs_operation(server), _CLIENTS, _WINDOW_SECONDS).rate)
                    record(build, "`workerctl status ID` wall, ms", _cli_wall_ms(server, job_id))
                record(build, "time-limit lateness p99, ms",
                       _lateness_p99_ms(credentials, directory / f"{number}-{build.replace(' ', '-')}-limit"))
    lines = [f"| ({_CLIENTS} clients, {rounds} rounds) | {BUILDS[0]} | {BUILDS[1]} | rounds, this checkout | "
             f"rounds, the other |", "| --- | --- | --- | --- | --- |"]
    def show(values: list[float]) -> str:
        return ", ".join(f"{value:.3g}" for value in values)

    for name in figures[BUILDS[0]]:
        mine, theirs = figures[BUILDS[0]][name], figures[BUILDS[1]][name]
        lines.append(f"| {name} | {statistics.median(mine):.3g} | {statistics.median(theirs):.3g} | {show(mine)} | "
                     f"{show(theirs)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="where the other build is installed (pip install --target)")
    parser.add_argument("--rounds", type=int, default=4)
    arguments = parser.parse_args()
    print(compare(arguments.other.resolve(), arguments.rounds), end="")


if __name__ == "__main__":
    main()
