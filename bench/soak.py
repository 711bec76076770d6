"""A soak: many clients mixing start, status and stop against one server for a long time (the test suite's
load test, for longer), printing throughput, errors, the clients' latencies and the server's descriptors and
memory as it goes. With `--hostile`, the hostile client of bench/hostile.py attacks the same server meanwhile;
`--compare` runs a quiet soak and a hostile one back to back, each on a fresh server, and compares them.

    .venv/bin/python -m bench.soak --minutes 10 --clients 32
    .venv/bin/python -m bench.soak --minutes 3 --clients 16 --compare

Each client is a user of its own and the server keeps its default rate limit per user (unlike the benchmark's,
whose clients are one user going as fast as they can): the hostile client's flood then meets the limit as a user
of its own would in production, and the normal clients, each far below it, meet it in neither run.

It exits non-zero if any request failed, a job did not end, a process of a job was left behind, or the server's
descriptors and memory did not come back near where they started; with --compare, also if the normal clients'
p99 latency under attack is more than twice the quiet one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from workerctl.runtime.settings import ServerSettings
from workerctl.store.users import add_user

from bench.hostile import Attacks, attack_counts, start_attacks
from bench.http_client import HttpConnection, HttpError
from bench.material import make_credentials
from bench.processes import total_cpu_seconds
from bench.stats import percentile
from bench.workerctl_server import FINAL_STATUSES, NO_OUTPUT, WorkerctlApi, WorkerctlServer

_COMMANDS = ["true", "echo hello", "sleep 0.2", "sleep 30", "exit 3", "head -c 100000 /dev/zero"]
_REPORT_SECONDS = 30.0
_SETTLE_SECONDS = 60.0
_SPARE_DESCRIPTORS = 5
_SPARE_MEMORY_BYTES = 50 * 1024 * 1024
_MAX_P99_RATIO = 2.0
_RATE_LIMITED_SECONDS = 0.1
LONG_POLL = "status, wait 50 ms"  # waits on purpose: left out of the latencies compared

Latencies = dict[str, list[float]]  # seconds, by kind of request
Footprint = dict[str, tuple[int, int]]  # (open descriptors, RSS bytes), by process


@dataclass(frozen=True)
class SoakRun:
    latencies: Latencies
    before: Footprint
    after: Footprint
    problems: list[str]

    @property
    def prompt(self) -> list[float]:
        """The latencies of every request that answers at once: all but the long polls."""
        return [seconds for kind, samples in self.latencies.items() if kind != LONG_POLL for seconds in samples]

    def p_ms(self, fraction: float) -> float:
        return percentile(self.prompt, fraction) * 1000


def _connect(server: WorkerctlServer, token: str) -> WorkerctlApi:
    return WorkerctlApi(HttpConnection(server.port, server.credentials.client_context(),
                                       headers={"Authorization": f"Bearer {token}",
                                                "Content-Type": "application/json"}))


def _client(server: WorkerctlServer, token: str, seconds: float, results: Connection) -> None:
    """Mix requests until `seconds` have passed, then stop every job started; send back the outcome counts, the
    number of jobs started and of those that did not end, and the latencies."""
    api = _connect(server, token)
    rng = random.Random()
    outcomes: Counter[str] = Counter()
    started: list[str] = []
    latencies: Latencies = {"start": [], "status": [], LONG_POLL: [], "stop": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roll = rng.random()
        kind = ("start" if roll < 0.3 or not started else
                rng.choice(["status", "status", LONG_POLL]) if roll < 0.85 else "stop")
        began = time.perf_counter()
        try:
            if kind == "start":
                started.append(api.start(rng.choice(_COMMANDS)))
            elif kind == "stop":
                api.call("stop", jobID=rng.choice(started))
            else:
                api.call("status", jobID=rng.choice(started), wait=0.05 if kind == LONG_POLL else 0)
            outcomes["ok"] += 1
        except HttpError as error:
            # A job past the server's retention (1,000 ended jobs per user) is deleted: 404 then is right.
            outcomes["404 (pruned)" if "HTTP 404" in str(error) else str(error).split(":")[0]] += 1
        latencies[kind].append(time.perf_counter() - began)
    unfinished = sum(not _stopped(api, job_id) for job_id in started)
    results.send((outcomes, len(started), unfinished, latencies))


def _stopped(api: WorkerctlApi, job_id: str) -> bool:
    """Stop the job (it may have ended already) and say whether it ended, waiting out the rate limit: stopping
    every job at the end goes faster than the mix."""
    while True:
        try:
            api.call("stop", jobID=job_id)
            return api.call("status", jobID=job_id, offset=NO_OUTPUT)["status"] in FINAL_STATUSES
        except HttpError as error:
            if "HTTP 429" not in str(error):
                return "HTTP 404" in str(error)  # ended, and deleted past the retention
        time.sleep(_RATE_LIMITED_SECONDS)


def _footprint(server: WorkerctlServer) -> Footprint:
    return {name: (process.num_fds(), process.memory_info().rss)
            for name, process in server.front_end_and_supervisor().items()}


def _cpu_seconds(server: WorkerctlServer) -> dict[str, float]:
    return {name: total_cpu_seconds([process]) for name, process in server.front_end_and_supervisor().items()}


def _shown(footprint: Footprint) -> str:
    return ", ".join(f"{name} {fds} descriptors {rss / 2**20:.0f} MiB" for name, (fds, rss) in footprint.items())


def _latency_line(latencies: Latencies) -> str:
    return "; ".join(f"{kind} p50 {percentile(samples, 0.5) * 1000:.1f} p99 {percentile(samples, 0.99) * 1000:.1f}"
                     for kind, samples in latencies.items())


def _run_clients(server: WorkerctlServer, tokens: list[str], seconds: float,
                 attacks: Attacks) -> tuple[Counter[str], int, int, Latencies]:
    """A client process per token for `seconds`, reporting the server's footprint as they go; what they saw:
    outcome counts, jobs started, jobs that did not end, and latencies."""
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in tokens]
    workers = [context.Process(target=_client, args=(server, token, seconds, sender))
               for token, (_, sender) in zip(tokens, pipes)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    while any(worker.is_alive() for worker in workers) and not all(receiver.poll() for receiver, _ in pipes):
        time.sleep(min(_REPORT_SECONDS, max(1.0, began + seconds - time.monotonic())))
        print(f"{time.monotonic() - began:6.0f} s: {_shown(_footprint(server))}", flush=True)
    outcomes: Counter[str] = Counter()
    jobs = unfinished = 0
    latencies: Latencies = {}
    for receiver, _ in pipes:
        counts, client_jobs, client_unfinished, client_latencies = receiver.recv()
        outcomes.update(counts)
        jobs += client_jobs
        unfinished += client_unfinished
        for kind, samples in client_latencies.items():
            latencies.setdefault(kind, []).extend(samples)
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    for name, counts in attack_counts(attacks).items():
        print(f"hostile, {name}: {dict(counts)}")
    print(f"{sum(outcomes.values())} requests in {elapsed:.0f} s ({sum(outcomes.values()) / elapsed:.0f}/s): "
          f"{dict(outcomes)}; {jobs} jobs")
    print(f"latency ms: {_latency_line(latencies)}")
    return outcomes, jobs, unfinished, latencies


def soak(minutes: float, clients: int, hostile: bool = False) -> SoakRun:
    seconds = minutes * 60
    with tempfile.TemporaryDirectory(prefix="workerctl-soak-", dir="/tmp") as scratch:
        directory = Path(scratch)
        directory.chmod(0o711)  # jobs run as other users must reach their working directories
        credentials = make_credentials(directory)
        tokens = [add_user(credentials.users, f"soak{number}") for number in range(clients)]
        hostile_token = add_user(credentials.users, "hostile")
        # The flags' last word wins: the server's own default rate limit, not the benchmark's none.
        with WorkerctlServer(credentials, directory / "server",
                             extra=("--rate-limit", f"{ServerSettings().rate_limit:g}")) as server:
            for token in tokens:  # a user's first job makes their home: not what the soak measures
                _connect(server, token).run_to_end("true")
            time.sleep(1)
            before, cpu_before = _footprint(server), _cpu_seconds(server)
            # Started first, so the clients' first requests already meet them; both run for `seconds`.
            attacks = start_attacks(server.port, credentials.client_context(), hostile_token, seconds) if hostile \
                else []
            outcomes, jobs, unfinished, latencies = _run_clients(server, tokens, seconds, attacks)
            print("CPU seconds: " + ", ".join(f"{name} {used - cpu_before[name]:.0f}"
                                              for name, used in _cpu_seconds(server).items()))
            deadline = time.monotonic() + _SETTLE_SECONDS
            while server.job_processes() and time.monotonic() < deadline:
                time.sleep(0.5)
            leftovers = server.job_processes()
            after = _footprint(server)
    print(f"before: {_shown(before)}\nafter:  {_shown(after)}")
    problems = []
    if set(outcomes) - {"ok", "404 (pruned)"}:
        problems.append("some requests failed")
    if unfinished:
        problems.append(f"{unfinished} of {jobs} jobs did not end")
    if leftovers:
        problems.append(f"processes of {len(leftovers)} jobs were left behind")
    for name, (fds, rss) in after.items():
        if name in before and (fds > before[name][0] + _SPARE_DESCRIPTORS
                               or rss > before[name][1] + _SPARE_MEMORY_BYTES):
            problems.append(f"the {name} holds {fds} descriptors and {rss // 2**20} MiB")
    run = SoakRun(latencies, before, after, problems)
    print(f"{'hostile' if hostile else 'quiet'} soak: normal clients p50 {run.p_ms(0.5):.1f} ms, "
          f"p99 {run.p_ms(0.99):.1f} ms; {'; '.join(problems) if problems else 'passed'}", flush=True)
    return run


def compare(minutes: float, clients: int) -> bool:
    """A quiet soak, then a hostile one; whether both passed and the hostile p99 is within twice the quiet one."""
    quiet = soak(minutes, clients)
    hostile = soak(minutes, clients, hostile=True)
    ratio = hostile.p_ms(0.99) / quiet.p_ms(0.99)
    print(f"\n{'':10} {'p50 ms':>8} {'p99 ms':>8}  before → after")
    for name, run in (("quiet", quiet), ("hostile", hostile)):
        print(f"{name:10} {run.p_ms(0.5):8.2f} {run.p_ms(0.99):8.2f}  {_shown(run.before)} → {_shown(run.after)}")
    print(f"hostile/quiet p99: {ratio:.2f} (at most {_MAX_P99_RATIO:g})")
    return not quiet.problems and not hostile.problems and ratio <= _MAX_P99_RATIO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--hostile", action="store_true", help="attack the server meanwhile (bench/hostile.py)")
    mode.add_argument("--compare", action="store_true", help="a quiet soak, then a hostile one, compared")
    arguments = parser.parse_args()
    if psutil.Process().uids().effective != 0:
        sys.exit("the soak runs the server as root, as jobs then get a user of their own")
    if arguments.compare:
        passed = compare(arguments.minutes, arguments.clients)
    else:
        passed = not soak(arguments.minutes, arguments.clients, arguments.hostile).problems
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
