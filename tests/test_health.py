"""GET /healthz and GET /readyz: no token, no rate limit, no INFO log line; readiness says 503, and why, while
the supervisor restarts, and a cluster's front end says so while no agent holds a lease."""

from __future__ import annotations

import os
import signal

import pytest
from cluster_support import celery_problem
from facilities import needs
from support import poll_until, start_server


def test_health_and_readiness_need_no_token_nor_count_against_the_rate_limit(server_factory):
    server = server_factory("--rate-limit", "1")
    for _ in range(20):
        assert server.raw("GET", path="/healthz").body == {"status": "serving"}
        assert server.raw("GET", path="/readyz").body == {"status": "ready"}
    answer = server.raw("POST", path="/healthz", body=b"{}")
    assert answer.status == 405 and answer.headers["Allow"] == "GET"
    assert "request action=" not in server.log()  # at INFO, a balancer's checks would be noise: at DEBUG


def test_readiness_is_503_while_the_supervisor_restarts(server_factory):
    server = server_factory()
    # serve, which starts a new supervisor, is held still meanwhile, so that the gap lasts until the test is done.
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        os.kill(server.child_pid("supervisor"), signal.SIGKILL)
        answer = poll_until(lambda: (lambda answer: answer if answer.status == 503 else None)(
            server.raw("GET", path="/readyz")), message="readiness to fail")
        assert "supervisor" in answer.body["error"], answer.body
        assert server.raw("GET", path="/healthz").status == 200  # the front end itself serves on
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    poll_until(lambda: server.raw("GET", path="/readyz").status == 200, message="readiness to come back")


@pytest.mark.slow
def test_a_cluster_front_end_is_not_ready_without_an_agent(tmp_path, tls, users, redis_location):
    needs("cluster", celery_problem())
    front_end = start_server(tmp_path / "front", tls, users, "--cluster", redis_location)
    try:
        assert front_end.raw("GET", path="/healthz").status == 200
        answer = front_end.raw("GET", path="/readyz")
        assert answer.status == 503 and "no agent" in answer.body["error"], answer.body
    finally:
        front_end.stop()
