"""What the front door's options cost per request and per job, each on and off side by side:
`python -m bench.front_door` (as root, about 3 minutes on 2 cores).

Four servers are measured in turns, in a rotated order each round: none of the options (`--rate-limit 0`), the
per-user rate limit (set far above what the clients send, so every request is counted and none refused), the
audit log, and client certificates (mutual TLS) in place of tokens. For each: status answers a second over
kept-alive connections, the same with a new connection (and TLS handshake) per request, and trivial jobs
started and waited for a second, each with 4 client processes; reported as the median of the rounds and as a
ratio to the server without options measured in the same round.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
from workerctl.server.certificates import mint_client_certificate

from bench.http_client import HttpConnection
from bench.load import Operation, OperationFactory, run_load
from bench.material import BENCH_USER, Credentials, make_credentials
from bench.stats import Spread
from bench.workerctl_server import FINAL_STATUSES, WorkerctlApi, WorkerctlServer
from bench.workload import TRIVIAL_COMMAND

CLIENTS = 4
JSON = {"Content-Type": "application/json"}

Connect = Callable[[WorkerctlServer, bool], HttpConnection]  # (server, keep alive) -> a connection as the user


def _with_token(server: WorkerctlServer, keep_alive: bool) -> HttpConnection:
    return server.connect(keep_alive).connection


def _with_certificate(client_tls: ssl.SSLContext) -> Connect:
    def connect(server: WorkerctlServer, keep_alive: bool) -> HttpConnection:
        return HttpConnection(server.port, client_tls, headers=JSON, keep_alive=keep_alive)
    return connect


def _status(server: WorkerctlServer, connect: Connect, keep_alive: bool) -> OperationFactory:
    api = WorkerctlApi(connect(server, True))
    job_id = api.start(TRIVIAL_COMMAND)
    api.wait_status(job_id, FINAL_STATUSES)
    api.close()
    body = json.dumps({"action": "status", "jobID": job_id}).encode()

    def factory(_index: int) -> Operation:
        connection = connect(server, keep_alive)

        def status() -> None:
            connection.post(body)
        return status
    return factory


def _jobs(server: WorkerctlServer, connect: Connect) -> OperationFactory:
    def factory(_index: int) -> Operation:
        api = WorkerctlApi(connect(server, True))

        def start_and_wait() -> None:
            api.run_to_end(TRIVIAL_COMMAND)
        return start_and_wait
    return factory


MEASURES: dict[str, Callable[[WorkerctlServer, Connect], OperationFactory]] = {
    "status/s, kept-alive": lambda server, connect: _status(server, connect, True),
    "status/s, new connection each": lambda server, connect: _status(server, connect, False),
    "jobs/s, start and wait": _jobs,
}


def _configurations(credentials: Credentials, directory: Path) -> dict[str, tuple[tuple[str, ...], Connect]]:
    client = mint_client_certificate(credentials.ca.parent, BENCH_USER)
    client_tls = credentials.client_context()
    client_tls.load_cert_chain(client.cert, client.key)
    return {
        "off": ((), _with_token),
        "rate limit": (("--rate-limit", "1000000"), _with_token),
        "audit log": (("--audit-log", str(directory / "audit.jsonl")), _with_token),
        "mutual TLS": (("--client-ca", str(credentials.ca)), _with_certificate(client_tls)),
    }


def measure(rounds: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """Per configuration and measure, the rate of each round."""
    rates: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="workerctl-front-door-", dir="/tmp") as scratch:
        directory = Path(scratch)
        directory.chmod(0o711)  # jobs run as other users must reach their working directories
        credentials = make_credentials(directory)
        configurations = _configurations(credentials, directory)
        names = list(configurations)
        for round_number in range(rounds):
            for name in names[round_number % len(names):] + names[:round_number % len(names)]:
                extra, connect = configurations[name]
                with WorkerctlServer(credentials, directory / f"server-{name.replace(' ', '-')}", extra=extra) \
                        as server:
                    server.connect().run_to_end("true")  # the user's home is made once, not measured
                    for measure_name, factory in MEASURES.items():
                        rate = run_load(factory(server, connect), CLIENTS, seconds).rate
                        rates.setdefault(name, {}).setdefault(measure_name, []).append(rate)
                        print(f"round {round_number + 1}, {name}, {measure_name}: {rate:.0f}", flush=True)
    return rates


def report(rates: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| option | " + " | ".join(MEASURES) + " |", "| --- |" + " --- |" * len(MEASURES)]
    for name, by_measure in rates.items():
        cells = []
        for measure_name, values in by_measure.items():
            spread = Spread.of(values)
            ratio = Spread.of([value / off for value, off in zip(values, rates["off"][measure_name])])
            cells.append(f"{spread.median:.0f}" if name == "off" else
                         f"{spread.median:.0f} ({ratio.median:.2f} of off, {ratio.low:.2f}–{ratio.high:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="the window of each measure")
    arguments = parser.parse_args()
    if psutil.Process().uids().effective != 0:
        sys.exit("the benchmark runs the server as root, as jobs then get a user of their own")
    print(report(measure(arguments.rounds, arguments.seconds)))


if __name__ == "__main__":
    main()
