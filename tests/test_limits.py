"""Limits kept by the kernel, per job and per user: memory, CPU and processes; asked for per job within the
server's maxima; and reported with what each job used."""

from __future__ import annotations

import pytest
from facilities import needs
from support import marker, poll_until


@pytest.fixture(scope="module")
def server_flags():
    return ("--job-memory", "64M", "--job-cpus", "0.5", "--job-processes", "40", "--user-processes", "60",
            "--max-job-timeout", "30")


@pytest.fixture(autouse=True)
def limits_in_force(server):
    in_force = "limits: memory, CPU and processes per job and per user" in server.log()
    needs("limits", None if in_force else "the server found no cgroup controllers to keep limits with")


def test_a_job_past_its_memory_limit_ends_in_error_naming_the_limit(server):
    status = server.wait_final(server.start("python3 -c 'b = bytearray(200 * 2**20)'"))
    assert status["status"] == "error"
    assert status["reason"].startswith("memory limit of 64M exceeded")
    assert status["limits"]["memoryBytes"] == 64 * 2**20 and status["usage"]["peakMemoryBytes"] <= 64 * 2**20


def test_a_job_within_its_limits_is_not_touched(server):
    status = server.wait_final(server.start("python3 -c 'b = bytearray(16 * 2**20); print(len(b))'"))
    assert (status["status"], status["output"], status["reason"]) == ("finished", f"{16 * 2**20}\n", None)


def test_a_fork_bomb_stops_at_the_job_cap(server):
    status = server.wait_final(server.start(f"for i in $(seq 100); do sleep {marker()} & done; echo never"))
    assert "Cannot fork" in status["output"] and "never" not in status["output"]


def test_one_users_jobs_together_stop_at_the_user_cap_while_another_users_run(server):
    mark = marker()
    # Each job's own three processes (the sandbox helper, its init and the shell) and 30 sleeps: within the job
    # cap of 40, but two of them pass the user cap of 60.
    command = f"for i in $(seq 30); do sleep {mark} & done; echo ready; wait"
    first = server.start(command)
    poll_until(lambda: server.status(first)["output"] == "ready\n", message="the first job's processes")
    second = server.wait_final(server.start(command))
    assert "Cannot fork" in second["output"]
    bob = server.wait_final(server.start("for i in $(seq 25); do sleep 0.01 & done; wait; echo fine", user="bob"),
                            user="bob")
    assert bob["output"] == "fine\n"
    assert server.status(first)["status"] == "running"
    server.call("stop", jobID=first)


@pytest.mark.slow
def test_a_job_gets_no_more_cpu_than_its_share(server):
    status = server.wait_final(server.start("timeout 2 sh -c 'while :; do :; done'", limits={"cpus": 0.25}))
    assert status["limits"]["cpus"] == 0.25
    assert status["usage"]["cpuSeconds"] <= 0.25 * 2 * 1.3  # its quota over two seconds, and some slack


def test_status_shows_limits_and_usage_live_and_final(server):
    job_id = server.start(f"python3 -c 'b = bytearray(8 * 2**20); import time; time.sleep({marker()})'")
    live = poll_until(lambda: (lambda s: s if (s["usage"] or {}).get("peakMemoryBytes", 0) > 8 * 2**20 else None)(
        server.status(job_id)), message="live usage")
    assert live["status"] == "running"
    assert live["limits"] == {"timeoutSeconds": 20.0, "memoryBytes": 64 * 2**20, "cpus": 0.5, "processes": 40}
    server.call("stop", jobID=job_id)
    final = server.status(job_id)
    assert final["usage"]["peakMemoryBytes"] >= live["usage"]["peakMemoryBytes"] and final["usage"]["cpuSeconds"] > 0


def test_a_start_may_ask_for_a_longer_time_limit_up_to_the_servers_most(server):
    job_id = server.start(f"sleep {marker()}", limits={"timeoutSeconds": 25})
    assert server.wait_running(job_id)["limits"]["timeoutSeconds"] == 25
    server.call("stop", jobID=job_id)
    refused = server.call("start", command="true", limits={"timeoutSeconds": 31})
    assert refused.status == 400 and refused.body["error"] == (
        "limits.timeoutSeconds may be at most 30 on this server (its --max-job-timeout)")


def test_a_job_asking_for_a_short_time_limit_ends_at_it(server):
    status = server.wait_final(server.start(f"sleep {marker()}", limits={"timeoutSeconds": 0.5}))
    assert (status["status"], status["reason"]) == ("error", "time limit of 0.5 s exceeded")
