"""Does a busy job slow the server? `python -m bench.busy` (as root) measures the latency of status answers over
one kept-alive connection with the server idle, then with 4 jobs each running 50 busy loops (every core busy:
each job may use one core, and one user all of them), and prints both as p50 and p99 in ms."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.material import make_credentials  # noqa: E402
from bench.workerctl_server import FINAL_STATUSES, WorkerctlApi, WorkerctlServer  # noqa: E402

_REQUESTS = 300
_BUSY_JOBS = 4
_LOOPS = 50
_SETTLE_SECONDS = 2.0  # for the loops to start and the scheduler to feel them


def _latencies_ms(api: WorkerctlApi, job_id: str) -> tuple[float, float]:
    samples = []
    for _ in range(_REQUESTS):
        began = time.perf_counter()
        api.call("status", jobID=job_id)
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="workerctl-busy-"))
    directory.chmod(0o711)  # jobs run as other users reach their homes under it
    with WorkerctlServer(make_credentials(directory), directory / "server") as server:
        api = server.connect()
        job_id = api.start("true")
        api.wait_status(job_id, FINAL_STATUSES)
        idle = _latencies_ms(api, job_id)
        busy = [api.start(f"for i in $(seq {_LOOPS}); do (while :; do :; done) & done; wait")
                for _ in range(_BUSY_JOBS)]
        time.sleep(_SETTLE_SECONDS)
        loaded = _latencies_ms(api, job_id)
        for busy_id in busy:
            api.call("stop", jobID=busy_id)
        api.close()
    print(f"status, idle: p50 {idle[0]:.2f} ms, p99 {idle[1]:.2f} ms")
    print(f"status, {_BUSY_JOBS} jobs of {_LOOPS} busy loops: p50 {loaded[0]:.2f} ms, p99 {loaded[1]:.2f} ms")


if __name__ == "__main__":
    main()
