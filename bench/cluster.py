"""The cluster beside one host, on one machine: `python -m bench.cluster` (as root, about 7 minutes on 2 cores;
`--quick`: one short round, a smoke test whose figures mean little).

Each round starts fresh: one host (`workerctl serve`), a redis-server (append-only file, synced at every write;
`--appendfsync everysec` shows what that costs), and on it two clusters under prefixes of their own: one agent
with a front end, and two agents with a front end. Each family of measurements then runs its contenders in turn,
in an order that alternates from round to round:

- latency: a trivial job (`true`) started and seen finished, one after another by one client: p50 and p90.
- status: answers a second about a finished job, 4 client processes over kept-alive connections, and the CPU
  time each part of the server side used per answer.
- stop: a running `sleep` stopped, from the request sent until its answer (200, status stopped).
- jobs: trivial jobs started and waited for a second by 4 and by 16 clients, one host, one agent and two agents;
  and, over the 4-client window, the CPU time each part of the server side used per job (from /proc, not the
  jobs' own processes).

Latency, status and stop compare one host with the one-agent cluster. Every figure is the median of the rounds
with their range; a ratio is the cluster's figure over one host's in the same round.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import psutil

from bench.cluster_peers import Cluster, RedisServer
from bench.load import Operation, OperationFactory, run_load
from bench.material import Credentials, make_credentials
from bench.processes import total_cpu_seconds
from bench.rounds import Round
from bench.stats import Spread, percentile
from bench.workerctl_server import WorkerctlServer, finished_job, jobs_operation, status_operation
from bench.workload import SLEEPER_COMMAND

ONE_HOST, ONE_AGENT, TWO_AGENTS = "one host", "1 agent", "2 agents"
JOB_COMMAND = "true"
STATUS_CLIENTS = 4
JOB_CLIENTS = (4, 16)
CPU_CLIENTS = 4  # the jobs window over which CPU is measured
CPU_PARTS = ("front end", "supervisor", "relay", "redis-server")
BUDGET_SECONDS = 540.0  # start no round that would likely end past this


@dataclass(frozen=True)
class Settings:
    rounds: int = 7
    window_seconds: float = 4.0  # each load window
    stops: int = 10  # stops per contender per round
    appendfsync: str = "always"  # Redis's fsync policy

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=1, window_seconds=1.0, stops=3)


@dataclass(frozen=True)
class Contender:
    front_end: WorkerctlServer
    cpu_parts: Callable[[], dict[str, list[psutil.Process]]]  # the server side's own processes, by part


def _one_host_parts(server: WorkerctlServer) -> Callable[[], dict[str, list[psutil.Process]]]:
    return lambda: {name: [process] for name, process in server.front_end_and_supervisor().items()}


def measure_latency(contenders: dict[str, Contender], settings: Settings, round_: Round) -> None:
    for name in round_.rotated([ONE_HOST, ONE_AGENT]):
        def latency() -> None:
            result = run_load(jobs_operation(contenders[name].front_end, JOB_COMMAND), 1, settings.window_seconds)
            round_.put(f"latency.p50_ms.{name}", result.latency_ms(0.5))
            round_.put(f"latency.p90_ms.{name}", result.latency_ms(0.9))
        round_.attempt(f"{name} latency", latency)


def measure_status(contenders: dict[str, Contender], settings: Settings, round_: Round) -> None:
    for name in round_.rotated([ONE_HOST, ONE_AGENT]):
        front_end = contenders[name].front_end
        round_.attempt(f"{name} status", lambda: _load_and_cpu(
            round_, "status", name, contenders[name],
            status_operation(front_end, finished_job(front_end, JOB_COMMAND)), STATUS_CLIENTS, settings))


def _stop_ms(server: WorkerctlServer) -> float:
    """Stop a running job: the milliseconds from the request sent until its answer."""
    api = server.connect()
    try:
        job_id = api.start(SLEEPER_COMMAND)
        api.wait_status(job_id, ("running",))
        began = time.monotonic()
        answer = api.call("stop", jobID=job_id)
        elapsed = time.monotonic() - began
    finally:
        api.close()
    if answer["status"] != "stopped":
        raise RuntimeError(f"a stop answered {answer}")
    return elapsed * 1000


def measure_stop(contenders: dict[str, Contender], settings: Settings, round_: Round) -> None:
    samples: dict[str, list[float]] = {ONE_HOST: [], ONE_AGENT: []}
    for repetition in range(settings.stops):
        for name in round_.rotated(list(samples), repetition):
            round_.attempt(f"{name} stop", lambda: samples[name].append(_stop_ms(contenders[name].front_end)))
    for name, milliseconds in samples.items():
        if milliseconds:
            round_.put(f"stop.p50_ms.{name}", percentile(milliseconds, 0.5))


def _counted(factory: OperationFactory, count: Synchronized[int]) -> OperationFactory:
    """The same operations, each counted once done: the clients' warm-up and overrun too, unlike a load's rate."""
    def counting_factory(index: int) -> Operation:
        operation = factory(index)

        def counted() -> None:
            operation()
            with count.get_lock():
                count.value += 1
        return counted
    return counting_factory


def _load_and_cpu(round_: Round, family: str, name: str, contender: Contender, factory: OperationFactory,
                  clients: int, settings: Settings, with_cpu: bool = True) -> None:
    """Operations a second, and the CPU milliseconds each part of the server side spent per operation meanwhile."""
    parts = contender.cpu_parts() if with_cpu else {}
    before = {part: total_cpu_seconds(processes) for part, processes in parts.items()}
    done: Synchronized[int] = multiprocessing.get_context("fork").Value("q", 0)  # type: ignore[assignment]
    round_.put(f"{family}.rate_c{clients}.{name}", run_load(_counted(factory, done), clients,
                                                           settings.window_seconds).rate)
    for part, processes in parts.items():
        round_.put(f"{family}.cpu.{part}.{name}", 1000 * (total_cpu_seconds(processes) - before[part]) / done.value)


def measure_jobs(contenders: dict[str, Contender], settings: Settings, round_: Round) -> None:
    for clients in JOB_CLIENTS:
        for name in round_.rotated(list(contenders), clients):
            round_.attempt(f"{name} jobs with {clients} clients", lambda: _load_and_cpu(
                round_, "jobs", name, contenders[name], jobs_operation(contenders[name].front_end, JOB_COMMAND),
                clients, settings, with_cpu=clients == CPU_CLIENTS))


FAMILIES = (measure_latency, measure_status, measure_stop, measure_jobs)


def run_round(round_: Round, directory: Path, credentials: Credentials, settings: Settings) -> None:
    """Start every contender fresh, run every family in this round's order, stop them all."""
    with ExitStack() as stack:
        one_host = stack.enter_context(WorkerctlServer(credentials, directory / "one-host"))
        redis_server = stack.enter_context(RedisServer(directory / "redis", settings.appendfsync))
        clusters = {name: stack.enter_context(Cluster(redis_server, credentials, directory / name.replace(" ", "-"),
                                                      agents))
                    for name, agents in ((ONE_AGENT, 1), (TWO_AGENTS, 2))}
        contenders = {ONE_HOST: Contender(one_host, _one_host_parts(one_host)),
                      **{name: Contender(cluster.front_end, cluster.cpu_parts) for name, cluster in clusters.items()}}
        for family in round_.rotated(FAMILIES):
            started = time.monotonic()
            family(contenders, settings, round_)
            print(f"bench:   {family.__name__} took {time.monotonic() - started:.0f} s", file=sys.stderr)


@dataclass(frozen=True)
class Goal:
    text: str
    met: Callable[[Spread, Spread], bool]  # given the cluster's figure and its ratio to one host's


@dataclass(frozen=True)
class Row:
    key: str  # FAMILY.MEASURE
    label: str
    digits: int
    goal: Goal | None = None


ROWS = (
    Row("latency.p50_ms", "start → finished p50, ms", 1,
        Goal("cluster ≤ 3× one host", lambda _cluster, ratio: ratio.median <= 3)),
    Row("latency.p90_ms", "start → finished p90, ms", 1),
    Row(f"status.rate_c{STATUS_CLIENTS}", f"status answers/s, {STATUS_CLIENTS} clients", 0,
        Goal("cluster ≥ 0.5× one host", lambda _cluster, ratio: ratio.median >= 0.5)),
    Row("stop.p50_ms", "stop p50, ms", 1, Goal("cluster ≤ 100 ms", lambda cluster, _ratio: cluster.median <= 100)),
)


def _cell(spread: Spread, digits: int = 0) -> str:
    if spread.missing:
        return "–"
    return f"{spread.median:.{digits}f} ({spread.low:.{digits}f}–{spread.high:.{digits}f})"


def _figure(rounds: list[Round], key: str) -> Spread:
    return Spread.of([round_.get(key) for round_ in rounds])


def _ratio(rounds: list[Round], key: str, numerator: str, denominator: str) -> Spread:
    return Spread.of([round_.get(f"{key}.{numerator}") / round_.get(f"{key}.{denominator}") for round_ in rounds])


def report(rounds: list[Round]) -> str:
    """The results as markdown tables: the comparisons with their goals, jobs a second, CPU per job and per
    status answer."""
    lines = ["| | one host | cluster, 1 agent | cluster / one host | goal |", "| --- | --- | --- | --- | --- |"]
    for row in ROWS:
        cluster = _figure(rounds, f"{row.key}.{ONE_AGENT}")
        ratio = _ratio(rounds, row.key, ONE_AGENT, ONE_HOST)
        goal = "" if row.goal is None else \
            f"{row.goal.text}: **{'met' if row.goal.met(cluster, ratio) else 'missed'}**"
        lines.append(f"| {row.label} | {_cell(_figure(rounds, f'{row.key}.{ONE_HOST}'), row.digits)} | "
                     f"{_cell(cluster, row.digits)} | {_cell(ratio, 2)} | {goal} |")
    lines += ["", "| trivial jobs/s | one host | cluster, 1 agent | cluster, 2 agents | 2 agents / 1 agent |",
              "| --- | --- | --- | --- | --- |"]
    for clients in JOB_CLIENTS:
        key = f"jobs.rate_c{clients}"
        lines.append(f"| {clients} clients | " + " | ".join(_cell(_figure(rounds, f"{key}.{name}"))
                                                          for name in (ONE_HOST, ONE_AGENT, TWO_AGENTS))
                     + f" | {_cell(_ratio(rounds, key, TWO_AGENTS, ONE_AGENT), 2)} |")
    lines += ["", "| CPU-ms | " + " | ".join(CPU_PARTS) + " | all |", "| --- |" + " --- |" * (len(CPU_PARTS) + 1)]
    for family, what, names in (("jobs", f"per job ({CPU_CLIENTS} clients)", (ONE_HOST, ONE_AGENT, TWO_AGENTS)),
                                ("status", f"per status answer ({STATUS_CLIENTS} clients)", (ONE_HOST, ONE_AGENT))):
        for name in names:
            keys = [f"{family}.cpu.{part}.{name}" for part in CPU_PARTS]
            total = Spread.of([sum(round_.get(key) for key in keys if key in round_.values) for round_ in rounds])
            lines.append(f"| {what}, {name} | " + " | ".join(_cell(_figure(rounds, key), 2) for key in keys)
                         + f" | {_cell(total, 2)} |")
    return "\n".join(lines)


def _end_cleanly_on_signals() -> None:
    """SIGTERM and SIGINT (Ctrl-C, even where a shell started the benchmark with it ignored) end the benchmark
    through every clean-up on the way out."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(128 + signal.SIGTERM))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke test")
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default=Settings.appendfsync,
                        help="Redis's fsync policy; everysec (not safe for production) shows what syncing every "
                             "write costs")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark runs the servers as root, as jobs then get a user of their own")
    _end_cleanly_on_signals()
    settings = replace(Settings.quick() if arguments.quick else Settings(rounds=arguments.rounds),
                       appendfsync=arguments.appendfsync)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="workerctl-cluster-bench-", dir="/tmp") as scratch:
        Path(scratch).chmod(0o711)  # jobs run as other users must reach their working directories
        credentials = make_credentials(Path(scratch))
        for index in range(settings.rounds):
            elapsed = time.monotonic() - began
            if rounds and elapsed + elapsed / len(rounds) > BUDGET_SECONDS:
                print(f"bench: stopping after {len(rounds)} rounds to stay within the time budget", file=sys.stderr)
                break
            round_ = Round(index)
            print(f"bench: round {index + 1} of {settings.rounds} ({time.monotonic() - began:.0f} s so far)",
                  file=sys.stderr)
            run_round(round_, Path(scratch) / f"round-{index + 1}", credentials, settings)
            rounds.append(round_)
    failures = [failure for round_ in rounds for failure in round_.failures]
    print(report(rounds))
    print(f"\n{len(rounds)} rounds in {time.monotonic() - began:.0f} s (Redis appendfsync {settings.appendfsync}, load "
          f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after); {len(failures)} measurements failed"
          + "".join(f"\n- {failure}" for failure in failures))


if __name__ == "__main__":
    main()
