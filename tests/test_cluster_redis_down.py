"""A cluster whose Redis stops and comes back: front ends answer 503 at once meanwhile (one started meanwhile
too), agents hold back what they must record, and once Redis is back every record and byte of output is there.
An agent cannot tell Redis down from being cut off from it, so once it could not renew its lease for the fence's
window its jobs' keepers end them (cluster/fencing.py); back, it records them as fenced, itself: the agent that
sweeps gives a lease that lapsed meanwhile time to be renewed, so the host is not taken for lost. Starts and
stops go through again. An agent started while Redis is down waits for it.
Redis runs with the append-only file and appendfsync always, as docs/cluster.md requires."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from cluster_support import celery_problem, start_agent
from facilities import needs
from redis_server import RedisServer
from support import Tls, Users, marker, poll_until, processes_with, start_server, wait_none_left
from workerctl.supervisor.lifecycle import FENCE_REASON

needs("cluster", celery_problem())
pytestmark = pytest.mark.slow  # a cluster waiting out Redis and its hosts' leases

_AGENT_HOST_TIMEOUT = 2.0  # its lease lapses while Redis is down (its jobs are fenced), but the host is not lost
_SWEEPER_HOST_TIMEOUT = 10.0  # room for the test's checks before the held relay must renew the lease


def _unavailable(answer):  # noqa: ANN001, ANN202 - support.Answer
    return answer if answer.status == 503 else None


def test_nothing_is_lost_while_redis_is_down_and_everything_goes_on_once_it_is_back(tmp_path: Path, tls: Tls,
                                                                                   users: Users) -> None:
    with ExitStack() as stack:
        redis = RedisServer(tmp_path / "redis", "--appendfsync", "always")
        stack.callback(redis.stop)
        prefix = f"down-{secrets.token_hex(4)}"
        url = redis.url(prefix=prefix)
        agent = start_agent(tmp_path, url, "h1", host_timeout=_AGENT_HOST_TIMEOUT)
        stack.callback(agent.stop)
        # Runs no job of the test's: it sweeps lost hosts once the first agent's relay is held (and cannot).
        sweeper = start_agent(tmp_path, url, "h2", host_timeout=_SWEEPER_HOST_TIMEOUT)
        stack.callback(sweeper.stop)
        front_end_flags = ("--cluster", url)
        front_end = start_server(tmp_path / "front", tls, users, *front_end_flags)
        stack.callback(front_end.stop)
        done = front_end.start("echo done-before")
        front_end.wait_final(done)
        ending_mark, running_mark = marker(), marker()
        # Writes all along, until it is fenced while Redis is down.
        ending = front_end.start(f"i=0; while sleep 0.05; do i=$((i+1)); echo line-$i; done # {ending_mark}",
                                 host="h1")
        running = front_end.start(f"echo still-here; sleep {running_mark}", host="h1")
        poll_until(lambda: "line-3\n" in front_end.status(ending)["output"], message="the job's first lines")
        front_end.wait_running(running)

        lines_before = front_end.status(ending)["output"].count("\n")
        redis.stop()
        stopped_at = time.monotonic()
        assert processes_with(ending_mark), "the job ended before Redis stopped: nothing was held back"
        assert "Redis" in poll_until(lambda: _unavailable(front_end.call("status", jobID=done)),
                                     message="a 503 while Redis is down").body["error"]
        assert front_end.call("start", command="true").status == 503
        late_front_end = start_server(tmp_path / "late", tls, users, *front_end_flags)  # starts all the same
        stack.callback(late_front_end.stop)
        answer = late_front_end.call("list")
        assert answer.status == 503 and "Redis" in answer.body["error"], answer.body
        wait_none_left(ending_mark)  # fenced: the lease could not be renewed
        wait_none_left(running_mark)

        # Redis comes back with the host's lease lapsed: the sweeping agent must give the host time to renew it
        # before taking it for lost. Its relay (which renews it) is held until the sweep has found it lapsed.
        relay = agent.relay_pid()
        os.kill(relay, signal.SIGSTOP)
        try:
            poll_until(lambda: time.monotonic() > stopped_at + _AGENT_HOST_TIMEOUT, message="the lease to lapse")
            redis.restart()
            with redis.client() as client:
                assert not client.exists(f"{prefix}:host:h1"), "the lease did not lapse while Redis was down"
            for server in (front_end, late_front_end):
                poll_until(lambda server=server: server.call("list").status == 200, message="Redis to be seen back")
            poll_until(lambda: "host h1 holds no lease" in sweeper.log(), message="the sweep to find the lease lapsed")
        finally:
            os.kill(relay, signal.SIGCONT)
        poll_until(lambda: "lease had lapsed" in agent.log(), message="the agent to renew its lapsed lease")
        for job in (ending, running):
            status = late_front_end.wait_final(job)
            assert (status["status"], status["reason"]) == ("error", FENCE_REASON), "a host that only lost Redis " \
                                                                                    "was taken for lost"
        ended = front_end.status(ending)
        lines = ended["output"].splitlines()
        assert lines == [f"line-{number}" for number in range(1, len(lines) + 1)], "output lost or repeated"
        assert len(lines) > lines_before and ended["outputBytes"] == len(ended["output"].encode()), ended
        assert front_end.status(done)["output"] == "done-before\n"
        assert late_front_end.status(running)["output"] == "still-here\n"
        after = late_front_end.start("echo after")
        assert late_front_end.wait_final(after)["output"] == "after\n"


def test_an_agent_started_while_redis_is_down_waits_for_it(tmp_path: Path, tls: Tls, users: Users) -> None:
    with ExitStack() as stack:
        redis = RedisServer(tmp_path / "redis")
        stack.callback(redis.stop)
        url = redis.url(prefix=f"late-{secrets.token_hex(4)}")
        redis.stop()
        log = tmp_path / "agent-h1.log"  # start_agent's

        def restart_redis_once_the_agent_waits() -> None:
            poll_until(lambda: log.exists() and "waiting until it can be" in log.read_text(),
                       message="the agent to wait for Redis")
            redis.restart()

        restarting = threading.Thread(target=restart_redis_once_the_agent_waits)
        restarting.start()
        try:
            stack.callback(start_agent(tmp_path, url, "h1").stop)  # started once the agent is ready
        finally:
            restarting.join()
        front_end = start_server(tmp_path / "front", tls, users, "--cluster", url)
        stack.callback(front_end.stop)
        job = front_end.start("echo ran")
        assert front_end.wait_final(job)["output"] == "ran\n"
