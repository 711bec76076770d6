"""A cluster on one machine: a real redis-server, two agents (`workerctl agent`, each its own host with its own
data directory, cgroups and sandboxes) and two front ends (`workerctl serve --cluster`), talked to over HTTPS.
Jobs spread over the hosts; either front end answers about, follows and stops any job; a start may pin a
host; a host killed outright has its jobs' processes ended and its jobs settled as lost, by the one agent that
sweeps, with or without a front end running; a host back from a lapsed lease ends the jobs settled as lost
meanwhile and keeps their records; Redis down is 503."""

from __future__ import annotations

import os
import re
import secrets
import signal
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from cluster_support import Agent, Cluster, celery_problem, start_agent
from facilities import needs
from redis_server import RedisServer, start_tls_redis
from support import (
    Server,
    Tls,
    Users,
    cgroups_of,
    kill_all,
    marker,
    mounts_under,
    poll_until,
    processes_with,
    start_server,
    wait_none_left,
)
from tcp_proxy import TcpProxy
from workerctl.store.backends import open_reader
from workerctl.store.layout import DataLayout
from workerctl.supervisor.lifecycle import FENCE_REASON

needs("cluster", celery_problem())
pytestmark = pytest.mark.slow  # agents and front ends on Redis, leases and host timeouts of seconds


def test_jobs_spread_over_the_hosts_and_any_front_end_answers_about_them(cluster: Cluster) -> None:
    first, second = cluster.front_ends
    mark = marker()
    jobs = [first.start(f"echo out-{index}; sleep {mark}") for index in range(2)]
    running = [first.wait_running(job) for job in jobs]
    assert {status["host"] for status in running} == {"h1", "h2"}
    for job in jobs:
        poll_until(lambda job=job: "out-" in second.status(job)["output"], message="the output through the other "
                                                                                    "front end")
    assert second.call("status", "bob", jobID=jobs[0]).status == 404
    assert second.call("stop", "bob", jobID=jobs[0]).status == 404
    listed = {job["jobID"]: job for job in second.call("list").body["jobs"]}
    assert set(jobs) <= listed.keys() and {listed[job]["host"] for job in jobs} == {"h1", "h2"}
    assert second.status(jobs[1], offset=6, wait=0.1)["nextOffset"] == 6  # "out-1\n" read, a long poll waited
    for job in jobs:  # each stopped through the front end that did not start it
        answer = second.call("stop", jobID=job)
        assert answer.status == 200 and answer.body["status"] == "stopped", answer.body
    assert first.status(jobs[0])["status"] == "stopped"
    wait_none_left(mark)


def test_a_front_end_says_which_of_its_settings_only_agents_use(cluster: Cluster) -> None:
    assert "ignoring --data-dir, --job-timeout: a cluster's front end runs no jobs" in cluster.front_ends[0].log()


def test_a_start_may_pin_a_host(cluster: Cluster) -> None:
    front_end = cluster.front_ends[1]
    for name in ("h1", "h2", "h1"):
        job = front_end.start("true", host=name)
        assert front_end.wait_final(job)["host"] == name
    answer = front_end.call("start", command="true", host="nowhere")
    assert answer.status == 400 and "nowhere" in answer.body["error"], answer.body


def test_an_agent_stopped_cleanly_ends_its_jobs_and_leaves_the_cluster_at_once(cluster: Cluster,
                                                                               tmp_path: Path) -> None:
    """Its jobs end as a single host's do at shutdown, and its lease goes with it: a start pinned to it is
    refused at once rather than left waiting for a host that is gone."""
    agent = start_agent(tmp_path, cluster.url, "h4", host_timeout=60)
    front_end = cluster.front_ends[0]
    mark = marker()
    job = front_end.start(f"sleep {mark}", host="h4")
    front_end.wait_running(job)
    agent.stop()
    wait_none_left(mark)
    status = front_end.status(job)
    assert (status["status"], status["reason"]) == ("error", "server shut down"), status
    answer = front_end.call("start", command="true", host="h4")
    assert answer.status == 400 and "no host h4" in answer.body["error"], answer.body


def test_an_agent_waits_while_another_holds_its_hosts_name(cluster: Cluster, tmp_path: Path) -> None:
    """A second agent given a name in use waits (its supervisor would take the first one's jobs for its own),
    and starts once the first has stopped."""
    with ExitStack() as stack:
        first = start_agent(tmp_path / "first", cluster.url, "h8")
        stack.callback(first.stop)
        log = tmp_path / "second" / "agent-h8.log"  # start_agent's
        started: list[Agent] = []
        second = threading.Thread(target=lambda: started.append(start_agent(tmp_path / "second", cluster.url, "h8")))
        second.start()
        stack.callback(lambda: [agent.stop() for agent in started])
        poll_until(lambda: log.exists() and "host h8 holds a lease already" in log.read_text(),
                   message="the second agent to wait")
        front_end = cluster.front_ends[0]
        job = front_end.start("sleep 600", host="h8")
        front_end.wait_running(job)
        first.stop()
        second.join()
        assert started, "the second agent did not start"
        assert front_end.status(job)["reason"] == "server shut down"  # the first agent's, not the second's
        assert front_end.wait_final(front_end.start("echo second", host="h8"))["output"] == "second\n"


def test_a_host_killed_outright_has_its_jobs_ended_and_settled_as_lost(cluster: Cluster) -> None:
    front_end = cluster.front_ends[0]
    mark, kept_mark = marker(), marker()
    lost_job = front_end.start(f"sleep {mark}", host="h2")
    kept_job = front_end.start(f"sleep {kept_mark}", host="h1")
    front_end.wait_running(lost_job)
    front_end.wait_running(kept_job)
    cluster.agents["h2"].kill_group()
    wait_none_left(mark)  # ended with their host, before any lease lapsed
    lost_data = cluster.agents["h2"].log_path.parent / "data-h2"
    poll_until(lambda: not cgroups_of(lost_data) and not mounts_under(lost_data),
               message="the lost host's guard to remove its cgroups and unmount its homes")
    assert front_end.wait_final(lost_job, timeout=30)["reason"] == "host h2 lost"
    status = cluster.front_ends[1].status(lost_job)
    assert status["status"] == "error" and "lost" in status["reason"]
    assert front_end.status(kept_job)["status"] == "running"
    replacement = front_end.start("true")
    assert front_end.wait_final(replacement)["host"] == "h1"
    assert front_end.call("stop", jobID=kept_job).body["status"] == "stopped"
    wait_none_left(kept_mark)


def test_a_job_waiting_on_a_lost_host_is_taken_over_and_never_starts_there(cluster: Cluster, tmp_path: Path) -> None:
    """A host with one slot runs a job and keeps the next waiting. Cut off past --host-timeout (its relay frozen),
    its running job is fenced, the waiting one does not start there (the lease has lapsed) and is taken over by a
    host that is left, within that host's limits. Once the cut-off host renews its lease, it does not start the
    job it no longer has."""
    with ExitStack() as stack:
        agent = start_agent(tmp_path, cluster.url, "h6", "--max-jobs", "1", "--max-job-timeout", "3600",
                            host_timeout=2)
        stack.callback(agent.stop)
        front_end = cluster.front_ends[0]
        first_mark, waiting_mark = marker(), marker()
        first = front_end.start(f"sleep {first_mark}", host="h6")
        front_end.wait_running(first)
        waiting = front_end.start(f"sleep {waiting_mark}", host="h6", limits={"timeoutSeconds": 3000})
        assert front_end.status(waiting)["status"] == "created"
        relay = agent.relay_pid()
        os.kill(relay, signal.SIGSTOP)
        stack.callback(os.kill, relay, signal.SIGCONT)
        # Its keeper ended it before the lease lapsed, and its supervisor (not frozen) recorded why.
        assert front_end.wait_final(first, timeout=30)["reason"] == FENCE_REASON
        taken = front_end.wait_running(waiting)  # and the job that waited there never started there
        assert taken["host"] in ("h1", "h2") and taken["limits"]["timeoutSeconds"] == 20, taken  # their most
        assert not processes_with(first_mark)
        os.kill(relay, signal.SIGCONT)  # renewed, the host would start it: its record says it is no longer its own
        poll_until(lambda: re.search(rf"job {waiting}: (its record is no longer this host's waiting job|ending it, "
                                     "as its record says running, on host h[12])", agent.log()),
                   message="the cut-off host to see the job taken over")
        assert cluster.front_ends[1].call("stop", jobID=waiting).body["status"] == "stopped"
        wait_none_left(waiting_mark)  # before the cut-off host's fence could end anything there


def test_a_job_waiting_on_a_dead_host_is_stopped_at_once_and_never_runs(cluster: Cluster, tmp_path: Path) -> None:
    """A stop of a waiting job needs no host: one whose host was just killed is stopped in the store, and is
    not handed to another host once that host is taken for lost."""
    with ExitStack() as stack:
        agent = start_agent(tmp_path, cluster.url, "h9", "--max-jobs", "1", host_timeout=2)
        stack.callback(agent.stop)
        front_end = cluster.front_ends[0]
        running_mark, waiting_mark = marker(), marker()
        running = front_end.start(f"sleep {running_mark}", host="h9")
        front_end.wait_running(running)
        waiting = front_end.start(f"sleep {waiting_mark}", host="h9")
        agent.kill_group()
        stopped = front_end.call("stop", jobID=waiting)
        assert stopped.status == 200 and stopped.body["status"] == "stopped", stopped.body
        assert front_end.wait_final(running, timeout=30)["reason"] == "host h9 lost"
        assert cluster.front_ends[1].status(waiting)["status"] == "stopped"
        assert not processes_with(waiting_mark)


def test_a_stop_that_waits_for_a_jobs_grace_holds_up_no_other_request(cluster: Cluster, tmp_path: Path) -> None:
    """A job that ignores SIGTERM takes its host's --kill-grace to stop; meanwhile the host answers a start. The
    grace outlasts any test; the test ends the stop once it is done, by killing the job."""
    with ExitStack() as stack:
        agent = start_agent(tmp_path, cluster.url, "h10", "--kill-grace", "600")
        stack.callback(agent.stop)
        front_end = cluster.front_ends[0]
        mark = marker()
        stubborn = front_end.start(f"trap '' TERM; sleep {mark}", host="h10")
        poll_until(lambda: processes_with(mark), message="the job's sleep, so its shell has set its trap")
        stopping = threading.Thread(target=front_end.call, args=("stop",), kwargs={"jobID": stubborn})
        stopping.start()
        stack.callback(stopping.join)
        stack.callback(kill_all, mark)
        poll_until(lambda: re.search(r"Task workerctl\.stop\[[^]]*\] received", agent.log()),
                   message="the stop to reach the host")
        started = front_end.start("echo meanwhile", host="h10")
        assert stopping.is_alive(), "the start waited for the stop to end"
        assert front_end.wait_final(started)["output"] == "meanwhile\n"


def test_an_agent_whose_name_was_taken_while_it_was_cut_off_stands_down(cluster: Cluster, tmp_path: Path) -> None:
    """Its lease lapsed (relay frozen) and another agent started with its name; when it comes back it finds the
    lease held by the other, ends its jobs and stops with status 78, leaving the other running."""
    with ExitStack() as stack:
        first = start_agent(tmp_path / "first", cluster.url, "h11", host_timeout=2)
        stack.callback(first.stop)
        relay = first.relay_pid()
        os.kill(relay, signal.SIGSTOP)
        try:
            second = start_agent(tmp_path / "second", cluster.url, "h11", host_timeout=2)  # once the lease lapsed
            stack.callback(second.stop)
        finally:
            os.kill(relay, signal.SIGCONT)
        assert first.process.wait(60) == 78
        assert "another agent holds the lease of host h11" in first.log()
        front_end = cluster.front_ends[0]
        assert front_end.wait_final(front_end.start("echo second", host="h11"))["output"] == "second\n"


def _said_ended_only_once_gone(front_end: Server, job: str, mark: str) -> dict:
    """Poll the job's status until it is final; at every look until then, and at that one, "running" or not, no
    process of the job may outlive what the record says: once final, none runs."""
    def final() -> dict | None:
        status = front_end.status(job)
        if status["status"] in ("finished", "stopped", "error"):
            assert not processes_with(mark), f"the job was said to be {status['status']} while it ran: {status}"
            return status
        return None
    return poll_until(final, timeout=30, interval=0.01, message=f"job {job} to end")


def test_a_host_cut_off_fences_itself_before_it_is_taken_for_lost(cluster: Cluster, tmp_path: Path,
                                                                   redis_server: RedisServer) -> None:
    """Its relay frozen (no renewals), then the whole agent frozen (nothing of it runs but the jobs' keepers), then
    its network to Redis cut (through a proxy; the front ends still reach Redis), each past --host-timeout: each
    job's keeper ends its job before the lease lapses, so that "lost" is never said of a job that runs. A live
    supervisor that reaches Redis records why; one frozen or cut off cannot, and the front ends settle the job as
    lost. Healed, the host runs jobs again."""
    proxy = TcpProxy(redis_server.port)
    agent = start_agent(tmp_path, cluster.url.replace(f":{redis_server.port}/", f":{proxy.port}/"), "h3",
                        host_timeout=2)
    try:
        front_end = cluster.front_ends[0]
        for cut_off, reason in (("relay", FENCE_REASON), ("agent", "host h3 lost"), ("network", "host h3 lost")):
            mark = marker()
            command = f"trap '' TERM; sleep {mark} & sleep {mark}"  # it takes the grace
            job = poll_until(lambda: (lambda answer: answer.body["jobID"] if answer.status == 200 else None)(
                front_end.call("start", command=command, host="h3")), message="the host to be back in the cluster")
            front_end.wait_running(job)
            poll_until(lambda: len(processes_with(mark)) >= 2, message="the job's processes")
            frozen = {"relay": [agent.relay_pid()], "network": [],
                      "agent": [agent.process.pid, agent.relay_pid(), _supervisor_pid(agent)]}[cut_off]
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            if cut_off == "network":
                proxy.cut()
            try:
                status = _said_ended_only_once_gone(front_end, job, mark)
            finally:
                proxy.heal()
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert (status["status"], status["reason"]) == ("error", reason), (cut_off, status)
            for each in cluster.front_ends:  # and the host, back, keeps the record as it is
                assert (each.status(job)["status"], each.status(job)["reason"]) == ("error", reason)
        back = poll_until(lambda: (lambda answer: answer.body["jobID"] if answer.status == 200 else None)(
            front_end.call("start", command="echo back", host="h3")), message="the host to be back in the cluster")
        assert front_end.wait_final(back)["output"] == "back\n"
    finally:
        agent.stop()
        proxy.close()


def test_an_agent_with_live_restore_hands_its_jobs_to_its_next_run(cluster: Cluster, tmp_path: Path) -> None:
    agent = start_agent(tmp_path, cluster.url, "h3r", "--live-restore", host_timeout=10)
    try:
        front_end = cluster.front_ends[0]
        mark = marker()
        job = front_end.start(f'i=0; while [ ! -e "$HOME/{mark}" ]; do i=$((i+1)); echo line $i; sleep 0.2; done; '
                              'echo done', host="h3r")
        poll_until(lambda: "line 2" in front_end.status(job)["output"], message="the job's first lines")
        agent.stop()
        assert front_end.status(job)["status"] == "running"
        agent = start_agent(tmp_path, cluster.url, "h3r", "--live-restore", host_timeout=10)
        assert "took back 1 jobs" in agent.log()
        (DataLayout(tmp_path / "data-h3r").home("alice") / mark).touch()
        status = front_end.wait_final(job)
        lines = status["output"].splitlines()
        assert (status["status"], status["exitCode"], lines[-1]) == ("finished", 0, "done"), status
        assert lines[:-1] == [f"line {number}" for number in range(1, len(lines))]
    finally:
        agent.stop()


def _supervisor_pid(agent: Agent) -> int:
    return int(re.findall(r"supervisor\[(\d+)\]: supervisor ready", agent.log())[-1])


def test_a_cluster_with_no_front_end_settles_a_lost_host_and_one_agent_sweeps_at_a_time(
        tmp_path: Path, tls: Tls, users: Users, redis_server: RedisServer) -> None:
    """Lost hosts are the agents' to sweep, one agent at a time: the first holds the sweep's lock, the second
    does not sweep. The first killed outright while no front end runs, the second takes the lock once it has
    lapsed, settles the dead host's running job as lost and takes over its waiting one, which runs there. The
    records are read from Redis itself: no front end is started again."""
    url = redis_server.url(prefix=f"sweep-{secrets.token_hex(6)}")
    sweeping = "sweeping lost hosts for the cluster"
    with ExitStack() as stack:
        first = start_agent(tmp_path, url, "s1", "--max-jobs", "1")
        stack.callback(first.stop)
        poll_until(lambda: sweeping in first.log(), message="the first agent to take the sweep's lock")
        second = start_agent(tmp_path, url, "s2")
        stack.callback(second.stop)
        front_end = start_server(tmp_path / "front", tls, users, "--cluster", url)
        mark = marker()
        running = front_end.start(f"sleep {mark}", host="s1")
        front_end.wait_running(running)
        waiting = front_end.start("echo taken-over", host="s1")
        assert front_end.status(waiting)["status"] == "created"
        front_end.stop()
        assert sweeping not in second.log(), "both agents sweep"

        first.kill_group()
        wait_none_left(mark)
        jobs = open_reader(url)
        stack.callback(jobs.close)
        lost = poll_until(lambda: (lambda record: record if record.status.is_final else None)(
            jobs.get(running, "alice")), timeout=30, message="the lost host's running job to be settled")
        assert (lost.status.value, lost.reason) == ("error", "host s1 lost"), lost
        taken = poll_until(lambda: (lambda record: record if record.status.is_final else None)(
            jobs.get(waiting, "alice")), timeout=30, message="the lost host's waiting job to run elsewhere")
        assert (taken.status.value, taken.host) == ("finished", "s2"), taken
        assert sweeping in second.log()


def test_a_cluster_on_a_redis_over_tls(tmp_path: Path, tls: Tls, users: Users) -> None:
    """rediss:// with the CA in the URL, for the store and for Celery's messages alike."""
    with ExitStack() as stack:
        redis, port, ca = start_tls_redis(tmp_path / "tls")
        stack.callback(redis.stop)
        url = f"rediss://:{redis.password}@127.0.0.1:{port}/0?prefix=tls&ssl_ca_certs={ca}"
        stack.callback(start_agent(tmp_path, url, "h1").stop)
        front_end = start_server(tmp_path / "front", tls, users, "--cluster", url)
        stack.callback(front_end.stop)
        job = front_end.start("echo over-tls")
        assert front_end.wait_final(job)["output"] == "over-tls\n"


def test_a_front_end_answers_503_at_once_while_redis_is_down(tmp_path: Path, tls: Tls, users: Users) -> None:
    redis = RedisServer(tmp_path / "redis")
    try:
        front_end = start_server(tmp_path, tls, users, "--cluster", redis.url(prefix="down"))
        try:
            redis.stop()
            answer = poll_until(lambda: (lambda answer: answer if answer.status != 200 else None)(
                front_end.call("list")), message="the front end to see Redis gone")
            assert answer.status == 503 and "Redis" in answer.body["error"], answer.body
            assert front_end.call("start", command="true").status == 503
            assert front_end.call("status", jobID="j" + "a" * 26).status == 503
        finally:
            front_end.stop()
    finally:
        redis.stop()
