"""Time limits, a flood of output, and many idle jobs: what holds when the server is pushed.

- `timelimit.*`: N jobs that all overrun a 2 s limit together; how late the last process of each exits after
  its deadline (startedAt + limit), seen from outside through pidfds, and how late the server records it.
- `output.*`: one job writing 1 GiB as fast as it can: bytes per second, and the server's RSS growth meanwhile.
- `sleepers.*`: RSS and CPU of the server's own processes while 1,000 jobs sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import psutil

from bench.contenders import Contenders
from bench.floors import output_floor
from bench.processes import MIB, total_rss, usage_over, watch_exits
from bench.rounds import Round
from bench.stats import percentile
from bench.supervisord_peer import Program, Supervisord
from bench.workerctl_server import FINAL_STATUSES, NO_OUTPUT, WorkerctlServer
from bench.workload import FLOOD_BYTES, FLOOD_COMMAND, SLEEPER_COMMAND

TIME_LIMIT_SECONDS = 2.0
_STARTING_CLIENTS = 8
_SAMPLE_SECONDS = 0.05
_READY_SECONDS = 120.0
_FLOOD_SECONDS = 120.0


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def start_many(server: WorkerctlServer, command: str, count: int) -> list[str]:
    """Start `count` jobs at once from several connections; their IDs. (The threads are gone on return, before
    anything forks.)"""
    def start_share(share: int) -> list[str]:
        api = server.connect()
        try:
            return [api.start(command) for _ in range(share)]
        finally:
            api.close()

    shares = [count // _STARTING_CLIENTS + (index < count % _STARTING_CLIENTS) for index in range(_STARTING_CLIENTS)]
    with ThreadPoolExecutor(_STARTING_CLIENTS) as pool:
        return [job_id for started in pool.map(start_share, shares) for job_id in started]


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


def measure_time_limit(contenders: Contenders, round_: Round) -> None:
    count = contenders.settings.timeout_jobs
    with WorkerctlServer(contenders.credentials, contenders.directory / "timelimit",
                         job_timeout=TIME_LIMIT_SECONDS) as server:
        job_ids = start_many(server, SLEEPER_COMMAND, count)
        # The processes of the look that found every job running: a second look, moments later, can miss a job
        # (the first ones reach their limit about as the last one starts, on a slow machine).
        seen: dict[str, list[psutil.Process]] = {}

        def all_running() -> bool:
            nonlocal seen
            seen = server.job_processes()
            return all(job_id in seen for job_id in job_ids)

        _wait_until(all_running, TIME_LIMIT_SECONDS, f"{count} jobs running")
        pids = {job_id: [process.pid for process in seen[job_id]] for job_id in job_ids}
        exits = watch_exits([pid for job_pids in pids.values() for pid in job_pids], TIME_LIMIT_SECONDS + 30.0)
        api = server.connect()
        answers = [api.wait_status(job_id, FINAL_STATUSES, timeout=30.0) for job_id in job_ids]
        api.close()
    observed, recorded = [], []
    for answer in answers:
        if answer["status"] != "error" or "time limit" not in (answer["reason"] or ""):
            raise RuntimeError(f"a job that overran its limit ended {answer['status']}: {answer['reason']}")
        deadline = _timestamp(answer["startedAt"]) + TIME_LIMIT_SECONDS
        recorded.append(_timestamp(answer["endedAt"]) - deadline)
        last_exit = max(exits.get(pid, float("inf")) for pid in pids[answer["jobID"]])  # every process gone
        observed.append(last_exit - deadline)
    round_.put("timelimit.p50_ms.workerctl", percentile(observed, 0.5) * 1000)
    round_.put("timelimit.p99_ms.workerctl", percentile(observed, 0.99) * 1000)
    round_.put("timelimit.max_ms.workerctl", max(observed) * 1000)
    round_.put("timelimit.not_seen_exiting.workerctl", sum(lateness == float("inf") for lateness in observed))
    round_.put("timelimit.recorded_p99_ms.workerctl", percentile(recorded, 0.99) * 1000)


class _RssPeak:
    """The highest RSS seen of some processes, against what they held before."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.baseline = total_rss(processes)
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, total_rss(self.processes))

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / MIB


def _flood_workerctl(contenders: Contenders, round_: Round) -> None:
    server = contenders.workerctl
    rss = _RssPeak(server.server_processes())
    api = server.connect()
    job_id = api.start(FLOOD_COMMAND)
    deadline = time.monotonic() + _FLOOD_SECONDS
    while (answer := api.call("status", jobID=job_id, offset=NO_OUTPUT))["status"] not in FINAL_STATUSES:
        rss.sample()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the 1 GiB job did not end within {_FLOOD_SECONDS:g} s")
        time.sleep(_SAMPLE_SECONDS)
    rss.sample()
    api.close()
    if answer["status"] != "finished" or answer["outputBytes"] != FLOOD_BYTES:
        raise RuntimeError(f"the 1 GiB job ended {answer['status']} after {answer['outputBytes']} bytes")
    seconds = _timestamp(answer["endedAt"]) - _timestamp(answer["startedAt"])
    round_.put("output.mbps.workerctl", FLOOD_BYTES / seconds / 1e6)
    round_.put("output.rss_growth_mb.workerctl", rss.growth_mib)


def _flood_supervisord(contenders: Contenders, round_: Round) -> None:
    supervisord = contenders.supervisord
    rss = _RssPeak([supervisord.server_process()])
    rpc = supervisord.connect()
    name = supervisord.programs["flood"].copy(0)
    began = time.monotonic()
    rpc.call("supervisor.startProcess", name, False)
    while rpc.state(name) != "EXITED":
        rss.sample()
        if time.monotonic() - began > _FLOOD_SECONDS:
            raise RuntimeError(f"supervisord's 1 GiB job did not end within {_FLOOD_SECONDS:g} s")
        time.sleep(_SAMPLE_SECONDS)
    seconds = time.monotonic() - began
    rss.sample()
    rpc.close()
    round_.put("output.mbps.supervisord", FLOOD_BYTES / seconds / 1e6)
    round_.put("output.rss_growth_mb.supervisord", rss.growth_mib)


def measure_output(contenders: Contenders, round_: Round) -> None:
    floods = {
        "floor": lambda: round_.put("output.mbps.floor", output_floor(contenders.directory) / 1e6),
        "workerctl": lambda: _flood_workerctl(contenders, round_),
        "supervisord": lambda: _flood_supervisord(contenders, round_),
    }
    for name in round_.rotated(list(floods)):
        round_.attempt(f"{name} 1 GiB of output", floods[name])


def _sleepers_workerctl(contenders: Contenders, round_: Round, name: str = "workerctl",
                        extra: tuple[str, ...] = ()) -> None:
    count = contenders.settings.sleeping_jobs
    with WorkerctlServer(contenders.credentials, contenders.directory / f"sleepers-{name}", extra=extra) as server:
        processes = server.server_processes()
        round_.put(f"idle.rss_mb.{name}", total_rss(processes) / MIB)
        began = time.monotonic()
        start_many(server, SLEEPER_COMMAND, count)
        api = server.connect()
        _wait_until(lambda: len(api.call("list", status="running", limit=1000)["jobs"]) >= min(count, 1000),
                    _READY_SECONDS, f"{count} jobs running")
        api.close()
        round_.put(f"sleepers.start_s.{name}", time.monotonic() - began)
        usage = usage_over(processes, contenders.settings.usage_seconds)
        round_.put(f"sleepers.rss_mb.{name}", usage.rss_bytes / MIB)
        round_.put(f"sleepers.cpu_pct.{name}", usage.cpu_percent)
        round_.put(f"sleepers.keeper_uss_kib.{name}", _keeper_memory(processes) / 1024)
        round_.put(f"sleepers.shutdown_s.{name}", server.stop())
    if extra:  # with live restore the jobs outlive the server: one without it ends them, from its start to its stop
        with WorkerctlServer(contenders.credentials, contenders.directory / f"sleepers-{name}"):
            pass


def _keeper_memory(server_processes: list[psutil.Process]) -> float:
    """The mean memory of its own (USS) of the jobs' keepers: the sandbox helper's processes the supervisor
    started, one per job."""
    keepers = [child for process in server_processes for child in process.children()
               if child.name() == "workerctl-sandbox"]
    own = []
    for keeper in keepers:
        try:
            own.append(keeper.memory_full_info().uss)
        except psutil.NoSuchProcess:
            pass
    return sum(own) / len(own) if own else 0.0


def _sleepers_supervisord(contenders: Contenders, round_: Round) -> None:
    count = contenders.settings.sleeping_jobs
    # supervisord holds about three descriptors per program, and refuses to start without room for them (a
    # larger limit would slow it: each child closes every descriptor below it before it execs).
    with Supervisord(contenders.directory / "supervisord-sleepers", [Program("idle", SLEEPER_COMMAND, count)],
                     min_fds=3 * count + 256) as supervisord:
        process = supervisord.server_process()
        round_.put("idle.rss_mb.supervisord", total_rss([process]) / MIB)
        rpc = supervisord.connect()
        began = time.monotonic()
        rpc.call("supervisor.startProcessGroup", "idle", False)
        _wait_until(lambda: sum(info["statename"] == "RUNNING" for info in rpc.call("supervisor.getAllProcessInfo"))
                    >= count, _READY_SECONDS, f"{count} supervisord programs running")
        rpc.close()
        round_.put("sleepers.start_s.supervisord", time.monotonic() - began)
        usage = usage_over([process], contenders.settings.usage_seconds)
        round_.put("sleepers.rss_mb.supervisord", usage.rss_bytes / MIB)
        round_.put("sleepers.cpu_pct.supervisord", usage.cpu_percent)
        supervisord.kill()  # its orderly shutdown of 1,000 programs takes 10 s, and nothing is measured of it


def measure_sleepers(contenders: Contenders, round_: Round) -> None:
    sleepers = {"workerctl": _sleepers_workerctl, "supervisord": _sleepers_supervisord,
                "live": lambda contenders, round_: _sleepers_workerctl(contenders, round_, "live", ("--live-restore",))}
    for name in round_.rotated(list(sleepers)):
        round_.attempt(f"{name} with {contenders.settings.sleeping_jobs} sleeping jobs",
                       lambda: sleepers[name](contenders, round_))
