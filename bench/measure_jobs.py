"""Trivial jobs, status and stop, for every contender that has the operation.

Figures are named `FAMILY.MEASURE.CONTENDER`; the floor is named `floor`.
- `job.*`: a trivial job started and seen finished, one after another by each of 1, 4 or 16 clients.
- `status.*` and `fresh.*`: status answers (the floor's minimal handler, workerctl's status, supervisord's
  getProcessInfo) over kept-alive connections, and workerctl and the floor over a new TLS connection each.
- `stop.*`: a stop request until every process of the job is gone, and how many were still running when the
  stop was answered (workerctl promises none).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import psutil

from bench.contenders import Contenders
from bench.floors import cgroup_parent, spawn_operation
from bench.http_client import HttpConnection
from bench.load import LoadResult, Operation, OperationFactory, run_load
from bench.rounds import Round
from bench.stats import percentile
from bench.workerctl_server import WorkerctlServer
from bench.workload import SLEEPER_COMMAND, TRIVIAL_COMMAND

CLIENT_COUNTS = (1, 4, 16)
RATE_CLIENTS = 4  # clients for the status rates
_EXEC_SECONDS = 5.0


def record_load(round_: Round, prefix: str, contender: str, result: LoadResult) -> None:
    """The rate, and for a single client the latencies too."""
    round_.put(f"{prefix}.rate_c{result.clients}.{contender}", result.rate)
    if result.clients == 1:
        round_.put(f"{prefix}.p50_ms.{contender}", result.latency_ms(0.5))
        round_.put(f"{prefix}.p99_ms.{contender}", result.latency_ms(0.99))


def _workerctl_job(server: WorkerctlServer) -> OperationFactory:
    def factory(_index: int) -> Operation:
        api = server.connect()

        def start_and_wait() -> None:
            answer = api.run_to_end(TRIVIAL_COMMAND)
            if answer["status"] != "finished" or answer["exitCode"] != 0:
                raise RuntimeError(f"a trivial job ended {answer['status']}: {answer}")
        return start_and_wait
    return factory


def measure_trivial_jobs(contenders: Contenders, round_: Round) -> None:
    with cgroup_parent(f"workerctl-bench-{os.getpid()}") as cgroups:
        operations: dict[str, OperationFactory] = {
            "floor": spawn_operation(contenders.directory / "spawn-floor", TRIVIAL_COMMAND),
            "workerctl": _workerctl_job(contenders.workerctl),
            "unsandboxed": _workerctl_job(contenders.workerctl_unsandboxed),
            "tsp": contenders.tsp.run_operation(TRIVIAL_COMMAND),
            "supervisord": contenders.supervisord.run_operation("trivial"),
        }
        if cgroups is not None:
            operations["cgroupfloor"] = spawn_operation(contenders.directory / "spawn-floor", TRIVIAL_COMMAND,
                                                        cgroups)
        for clients in CLIENT_COUNTS:
            for name in round_.rotated(list(operations), clients):
                round_.attempt(f"{name} trivial jobs with {clients} clients", lambda: record_load(
                    round_, "job", name, run_load(operations[name], clients, contenders.settings.window_seconds)))


def _posting(connection: HttpConnection, body: bytes) -> Operation:
    def post() -> None:
        connection.post(body)
    return post


def _status_operations(contenders: Contenders, keep_alive: bool) -> dict[str, OperationFactory]:
    """Operations answering one status request each; supervisord only over kept-alive plain HTTP."""
    api = contenders.workerctl.connect()
    job_id = api.start(TRIVIAL_COMMAND)
    api.wait_status(job_id, ("finished",))
    api.close()
    body = json.dumps({"action": "status", "jobID": job_id}).encode()

    def floor(_index: int) -> Operation:
        return _posting(contenders.floor_https.connect(keep_alive), body)

    def workerctl(_index: int) -> Operation:
        return _posting(contenders.workerctl.connect(keep_alive).connection, body)

    operations: dict[str, OperationFactory] = {"floor": floor, "workerctl": workerctl}
    if keep_alive:
        operations["supervisord"] = contenders.supervisord.info_operation("trivial")
    return operations


def measure_status(contenders: Contenders, round_: Round) -> None:
    for prefix, keep_alive in round_.rotated([("status", True), ("fresh", False)]):
        operations = _status_operations(contenders, keep_alive)
        for clients in (1, RATE_CLIENTS):
            for name in round_.rotated(list(operations), clients):
                round_.attempt(f"{name} {prefix} status with {clients} clients", lambda: record_load(
                    round_, prefix, name, run_load(operations[name], clients, contenders.settings.window_seconds)))


@dataclass(frozen=True)
class StopTiming:
    seconds: float  # from the request until every process was gone
    alive_at_answer: int  # processes of the job still running (not zombies) when the stop was answered


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _gone_after(processes: list[psutil.Process], began: float) -> StopTiming:
    """Call right after the stop is answered: how many of the processes are still running, and the seconds
    from `began` until none is."""
    alive_at_answer = sum(_running(process) for process in processes)
    deadline = time.monotonic() + 10.0
    while any(_running(process) for process in processes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {[p.pid for p in processes]} outlived their stop by 10 s")
        time.sleep(0.0005)
    return StopTiming(time.monotonic() - began, alive_at_answer)


def _stop_workerctl(contenders: Contenders) -> StopTiming:
    api = contenders.workerctl.connect()
    try:
        job_id = api.start(SLEEPER_COMMAND)
        api.wait_status(job_id, ("running",))
        processes = contenders.workerctl.job_processes().get(job_id, [])
        if not processes:
            raise RuntimeError(f"cannot find the processes of running job {job_id}")
        began = time.monotonic()
        answer = api.call("stop", jobID=job_id)
        if answer["status"] != "stopped":
            raise RuntimeError(f"a stop answered {answer}")
        return _gone_after(processes, began)
    finally:
        api.close()


def _stop_supervisord(contenders: Contenders) -> StopTiming:
    rpc = contenders.supervisord.connect()
    name = contenders.supervisord.programs["sleeper"].copy(0)
    try:
        rpc.call("supervisor.startProcess", name, True)
        process = psutil.Process(rpc.call("supervisor.getProcessInfo", name)["pid"])
        supervisord = os.readlink(f"/proc/{contenders.supervisord.server_process().pid}/exe")  # psutil caches exe()
        # supervisord reports RUNNING before its child has exec'd; a SIGTERM then is caught by the child's copy of
        # supervisord's handler and lost, and the stop takes its 10 s SIGKILL timeout. Stop what a user would see.
        deadline = time.monotonic() + _EXEC_SECONDS
        while os.readlink(f"/proc/{process.pid}/exe") == supervisord and time.monotonic() < deadline:
            time.sleep(0.001)
        began = time.monotonic()
        rpc.call("supervisor.stopProcess", name, True)
        return _gone_after([process], began)
    finally:
        rpc.close()


def measure_stop(contenders: Contenders, round_: Round) -> None:
    stoppers = {"workerctl": _stop_workerctl, "supervisord": _stop_supervisord}
    timings: dict[str, list[StopTiming]] = {name: [] for name in stoppers}
    for repetition in range(contenders.settings.stops):
        for name in round_.rotated(list(stoppers), repetition):
            round_.attempt(f"{name} stop", lambda: timings[name].append(stoppers[name](contenders)))
    for name, samples in timings.items():
        if samples:
            seconds = [sample.seconds for sample in samples]
            round_.put(f"stop.p50_ms.{name}", percentile(seconds, 0.5) * 1000)
            round_.put(f"stop.p99_ms.{name}", percentile(seconds, 0.99) * 1000)
            round_.put(f"stop.alive_at_answer.{name}", sum(sample.alive_at_answer for sample in samples))
