"""A soak: many clients mixing start, status and stop against one server for a long time (the test suite's
load test, for longer), printing throughput, errors and the server's descriptors and memory as it goes.

    .venv/bin/python -m bench.soak --minutes 10 --clients 32

It exits non-zero if any request failed, a job did not end, a process of a job was left behind, or the
server's descriptors and memory did not come back near where they started.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

from bench.http_client import HttpError
from bench.material import make_credentials
from bench.workerctl_server import FINAL_STATUSES, WorkerctlApi, WorkerctlServer

_COMMANDS = ["true", "echo hello", "sleep 0.2", "sleep 30", "exit 3", "head -c 100000 /dev/zero"]
_REPORT_SECONDS = 30.0
_SETTLE_SECONDS = 60.0
_SPARE_DESCRIPTORS = 5
_SPARE_MEMORY_BYTES = 50 * 1024 * 1024


def _client(server: WorkerctlServer, seconds: float, results: Connection) -> None:
    """Mix requests until `seconds` have passed; send back the outcome counts and the jobs started."""
    api = server.connect()
    rng = random.Random()
    outcomes: Counter[str] = Counter()
    started: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.3 or not started:
                started.append(api.start(rng.choice(_COMMANDS)))
            elif roll < 0.85:
                api.call("status", jobID=rng.choice(started), wait=rng.choice([0, 0, 0.05]))
            else:
                api.call("stop", jobID=rng.choice(started))
            outcomes["ok"] += 1
        except HttpError as error:
            # A job past the server's retention (1,000 ended jobs per user) is deleted: 404 then is right.
            outcomes["404 (pruned)" if "HTTP 404" in str(error) else str(error).split(":")[0]] += 1
    for job_id in started:
        try:
            api.call("stop", jobID=job_id)
        except HttpError:
            pass  # pruned
    results.send((outcomes, started))


def _ended(api: WorkerctlApi, job_id: str) -> bool:
    try:
        return api.call("status", jobID=job_id, offset=2**62)["status"] in FINAL_STATUSES
    except HttpError as error:
        return "HTTP 404" in str(error)  # ended, and deleted past the retention


def _footprint(server: WorkerctlServer) -> dict[int, tuple[int, int]]:
    """(open descriptors, RSS) of the front end and the supervisor, by pid."""
    return {process.pid: (process.num_fds(), process.memory_info().rss)
            for process in server.server_processes()[1:]}


def soak(minutes: float, clients: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="workerctl-soak-", dir="/tmp") as scratch:
        directory = Path(scratch)
        directory.chmod(0o711)  # jobs run as other users must reach their working directories
        with WorkerctlServer(make_credentials(directory), directory / "server") as server:
            server.connect().start("true")
            time.sleep(1)
            before = _footprint(server)
            context = multiprocessing.get_context("fork")
            pipes = [context.Pipe(duplex=False) for _ in range(clients)]
            workers = [context.Process(target=_client, args=(server, minutes * 60, sender))
                       for _, sender in pipes]
            for worker in workers:
                worker.start()
            began = time.monotonic()
            while any(worker.is_alive() for worker in workers) and not all(receiver.poll() for receiver, _ in pipes):
                time.sleep(min(_REPORT_SECONDS, max(1.0, began + minutes * 60 - time.monotonic())))
                now = _footprint(server)
                print(f"{time.monotonic() - began:6.0f} s: (descriptors, RSS MiB) "
                      f"{[(fds, rss // 2**20) for fds, rss in now.values()]}", flush=True)
            outcomes: Counter[str] = Counter()
            started: list[str] = []
            for receiver, _ in pipes:
                counts, jobs = receiver.recv()
                outcomes.update(counts)
                started.extend(jobs)
            for worker in workers:
                worker.join()
            elapsed = time.monotonic() - began
            api = server.connect()
            unfinished = [job_id for job_id in started if not _ended(api, job_id)]
            deadline = time.monotonic() + _SETTLE_SECONDS
            while server.job_processes() and time.monotonic() < deadline:
                time.sleep(0.5)
            leftovers = server.job_processes()
            after = _footprint(server)
            print(f"{sum(outcomes.values())} requests in {elapsed:.0f} s "
                  f"({sum(outcomes.values()) / elapsed:.0f}/s): {dict(outcomes)}; {len(started)} jobs")
            print(f"(descriptors, RSS MiB) before {[(f, r // 2**20) for f, r in before.values()]}, "
                  f"after {[(f, r // 2**20) for f, r in after.values()]}")
            problems = []
            if set(outcomes) - {"ok", "404 (pruned)"}:
                problems.append("some requests failed")
            if unfinished:
                problems.append(f"{len(unfinished)} jobs did not end")
            if leftovers:
                problems.append(f"processes of {len(leftovers)} jobs were left behind")
            for pid, (fds, rss) in after.items():
                if pid in before and (fds > before[pid][0] + _SPARE_DESCRIPTORS
                                      or rss > before[pid][1] + _SPARE_MEMORY_BYTES):
                    problems.append(f"process {pid} holds {fds} descriptors and {rss // 2**20} MiB")
            print("; ".join(problems) if problems else "soak passed")
            return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    arguments = parser.parse_args()
    if psutil.Process().uids().effective != 0:
        sys.exit("the soak runs the server as root, as jobs then get a user of their own")
    sys.exit(0 if soak(arguments.minutes, arguments.clients) else 1)


if __name__ == "__main__":
    main()
