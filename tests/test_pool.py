"""The pool: global and per-user limits on running jobs, first come first served, and fairness between users."""

from __future__ import annotations

import pytest
from support import marker, poll_until


@pytest.fixture(scope="module")
def server_flags():
    return "--max-jobs", "3", "--max-jobs-per-user", "2"


def running_count(server, job_ids, user="alice"):
    return [server.status(job_id, user)["status"] for job_id in job_ids].count("running")


def stop_all(server, job_ids, user="alice"):
    for job_id in job_ids:
        server.call("stop", user=user, jobID=job_id)


def test_past_the_users_limit_jobs_wait_in_created_and_start_in_order_when_a_slot_frees(server):
    mark = marker()
    jobs = [server.start(f"sleep {mark}") for _ in range(4)]
    server.wait_running(jobs[0])
    server.wait_running(jobs[1])
    assert [server.status(job_id)["status"] for job_id in jobs[2:]] == ["created", "created"]
    server.call("stop", jobID=jobs[0])
    server.wait_running(jobs[2])
    assert server.status(jobs[3])["status"] == "created"
    stop_all(server, jobs)


def test_a_waiting_job_can_be_stopped(server):
    mark = marker()
    running = [server.start(f"sleep {mark}") for _ in range(2)]
    waiting = server.start("echo never runs")
    assert server.call("stop", jobID=waiting).body == {"jobID": waiting, "status": "stopped"}
    status = server.status(waiting)
    assert status["status"] == "stopped" and status["startedAt"] is None and status["output"] == ""
    stop_all(server, running)


def test_the_global_limit_holds_across_users(server):
    mark = marker()
    alices = [server.start(f"sleep {mark}") for _ in range(2)]
    bobs = [server.start(f"sleep {mark}", user="bob") for _ in range(2)]
    poll_until(lambda: running_count(server, alices) + running_count(server, bobs, "bob") == 3)
    assert running_count(server, bobs, "bob") == 1
    stop_all(server, alices)
    poll_until(lambda: running_count(server, bobs, "bob") == 2)
    stop_all(server, bobs, "bob")


def test_one_users_flood_does_not_starve_another(server_factory):
    server = server_factory("--max-jobs", "2", "--max-jobs-per-user", "2")
    mark = marker()
    flood = [server.start(f"sleep {mark}") for _ in range(10)]
    poll_until(lambda: running_count(server, flood) == 2)
    late = server.start("echo my turn", user="bob")
    server.call("stop", jobID=flood[0])
    # The free slot goes to bob, who has nothing running, not to alice's next job that came first.
    assert server.wait_final(late, user="bob")["output"] == "my turn\n"
    assert running_count(server, flood) == 2
    stop_all(server, flood)


def test_past_the_queue_limit_starts_are_refused_with_429(server_factory):
    server = server_factory("--max-jobs-per-user", "1", "--max-queued-per-user", "2")
    mark = marker()
    jobs = [server.start(f"sleep {mark}") for _ in range(3)]  # one runs, two wait
    refused = server.call("start", command="true")
    assert refused.status == 429 and "waiting already" in refused.body["error"]
    assert server.call("start", user="bob", command="true").status == 200
    stop_all(server, jobs)
