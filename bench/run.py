"""The benchmark's one command: `python bench/run.py` from a checkout, as root (about 9 minutes on 2 cores).

It installs what it needs (bench/deps.py), mints throwaway TLS material, and runs rounds. Each round starts
every contender fresh and runs each family of measurements in an order that rotates from round to round, every
family running its contenders in turn. Everything stays on 127.0.0.1, and every part stops itself. It writes
docs/benchmarks/results.md, chart.png, README-summary.md and results.json. `--quick` runs every part briefly
(a smoke test whose figures mean little).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deps import REPOSITORY, ensure_dependencies  # noqa: E402

_BUDGET_SECONDS = 540.0  # start no round that would likely end past this
_INSTALLED_ENV = "WORKERCTL_BENCH_INSTALLED"
_SERVER_CODE = ("client", "server", "store", "web", "supervisor", "pyproject.toml")


def _about() -> dict[str, str]:
    import tornado

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", *_SERVER_CODE):  # the bench's own files do not change what is measured
        commit += " with uncommitted changes to " + ", ".join(_SERVER_CODE)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from importlib.metadata import version
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "workerctl": commit, "machine": f"{os.cpu_count()} × {cpu}",
            "kernel": platform.release(), "Python": platform.python_version(), "Tornado": tornado.version,
            "supervisor": version("supervisor"), "task-spooler": _tsp_version()}


def _git(*arguments: str) -> str:
    return subprocess.run(["git", "-C", str(REPOSITORY), *arguments], capture_output=True, text=True).stdout.strip()


def _tsp_version() -> str:
    done = subprocess.run(["tsp", "-V"], capture_output=True, text=True)
    words = (done.stdout + done.stderr).split()
    return words[2] if len(words) > 2 else "unknown"


def _report_again(out: Path) -> int:
    from bench.chart import write_chart
    from bench.report import read_results, write_results

    rounds, about = read_results(out)
    write_results(out, rounds, about, notes=[])
    write_chart(out / "chart.png", rounds)
    print(f"bench: wrote {out}/results.md, chart.png and README-summary.md from results.json", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="every part briefly, one round: a smoke test")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "benchmarks")
    parser.add_argument("--no-install", action="store_true", help="do not install the bench extra or tsp")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: write the tables and chart again from the last run's results.json")
    options = parser.parse_args(argv)
    if options.report_only:
        return _report_again(options.out)
    if os.geteuid() != 0:
        print("bench: run as root: only then does workerctl run jobs as other users (the floors and peers run theirs "
              "as nobody)", file=sys.stderr)
        return 2
    if not options.no_install and os.environ.get(_INSTALLED_ENV) != "1":
        ensure_dependencies()
        # What pip installed just now is not importable in this interpreter (an editable install works through a
        # .pth file, read only at start-up): start again, without installing.
        os.environ[_INSTALLED_ENV] = "1"
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv])

    from bench.chart import write_chart
    from bench.contenders import Settings, start_contenders
    from bench.material import make_credentials
    from bench.measure_cli import measure_cli
    from bench.measure_jobs import measure_status, measure_stop, measure_trivial_jobs
    from bench.measure_limits import (
        measure_output,
        measure_sleepers,
        measure_time_limit,
    )
    from bench.report import write_results
    from bench.rounds import Round

    families = [measure_trivial_jobs, measure_status, measure_stop, measure_cli, measure_time_limit,
                measure_output, measure_sleepers]
    settings = Settings.quick() if options.quick else Settings()
    rounds_wanted = 1 if options.quick else options.rounds
    began = time.monotonic()
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="workerctl-bench-") as scratch:
        os.chmod(scratch, 0o755)  # workerctl refuses a data directory its job users cannot reach
        credentials = make_credentials(Path(scratch))
        for index in range(rounds_wanted):
            elapsed = time.monotonic() - began
            if rounds and elapsed + elapsed / len(rounds) > _BUDGET_SECONDS:
                print(f"bench: stopping after {len(rounds)} rounds to stay within the time budget", file=sys.stderr)
                break
            round_ = Round(index)
            print(f"bench: round {index + 1} of {rounds_wanted} ({elapsed:.0f} s so far)", file=sys.stderr)
            with ExitStack() as stack:
                contenders = start_contenders(stack, Path(scratch) / f"round-{index + 1}", credentials, settings)
                for family in round_.rotated(families):
                    started = time.monotonic()
                    round_.attempt(family.__name__, lambda: family(contenders, round_))
                    print(f"bench:   {family.__name__} took {time.monotonic() - started:.0f} s", file=sys.stderr)
            rounds.append(round_)
    about = _about()
    about["rounds"] = str(len(rounds))
    about["duration"] = f"{time.monotonic() - began:.0f} s"
    write_results(options.out, rounds, about, notes=[])
    write_chart(options.out / "chart.png", rounds)
    print(f"bench: wrote {options.out}/results.md, chart.png and README-summary.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
