"""Jobs on a cluster's agents keep the single host's promises, and the command line works against a cluster's
front end: a job's time limit ends its whole process tree on an agent, escapes and SIGTERM-ignoring processes
included; a stop through a front end does the same on either host; `workerctl` starts (pinned with --host-name
or not), shows, follows, waits for, lists and stops jobs through a front end, and another user's job is the
CLI's "no such job"; a start pinned to a host that has just died is answered 503 and never runs, not even once
that host's agent is started again."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from cluster_support import Agent, Cluster, celery_problem, start_agent
from facilities import needs
from planted import build_planted_library, marks_directory, ran_as_root
from redis_server import RedisServer
from support import (
    Server,
    Tls,
    Users,
    assert_none_left,
    connected_to,
    marker,
    poll_until,
    sleepers,
    start_server,
)

needs("cluster", celery_problem())
pytestmark = pytest.mark.slow  # agents and front ends on Redis, a start's wait of seconds

_START_WAIT_SECONDS = 2.0
_LEASE_SECONDS = 4.0

# A job that forks a tree trying to get away: grandchildren, a `setsid` child, a double-forked `setsid`
# grandchild, and (after the `trap`) a process that ignores SIGTERM; all sleep with the marker {m}.
TREE = "sh -c 'sleep {m} & sleep {m}' & setsid sleep {m} & (setsid sh -c 'sleep {m} &' &); trap '' TERM; sleep {m}"
TREE_SLEEPS = 5
REFUSED = 65  # the CLI's exit status for a request the server refused (400)
NO_SUCH_JOB = 66  # the CLI's exit status for a job that does not exist, or is another user's


def start_tree(front_end: Server, host: str, **fields: object) -> tuple[str, str]:
    """Start TREE pinned to `host` and wait until every process of it runs; the job's ID and its marker."""
    mark = marker()
    job = front_end.start(TREE.format(m=mark), host=host, **fields)
    poll_until(lambda: len(sleepers(mark)) == TREE_SLEEPS, message=f"every process of the tree on {host}")
    return job, mark


def test_the_time_limit_ends_a_jobs_whole_tree_on_an_agent(cluster: Cluster) -> None:
    front_end = cluster.front_ends[0]
    job, mark = start_tree(front_end, "h2", limits={"timeoutSeconds": 3})
    status = front_end.wait_final(job, timeout=30)
    assert (status["status"], status["reason"], status["host"]) == ("error", "time limit of 3 s exceeded", "h2")
    assert_none_left(mark)  # a job is recorded as ended only once every process of it is gone
    assert cluster.front_ends[1].status(job)["reason"] == "time limit of 3 s exceeded"


def test_a_stop_through_a_front_end_ends_the_whole_tree_on_either_host(cluster: Cluster) -> None:
    first, second = cluster.front_ends
    for host in ("h1", "h2"):
        job, mark = start_tree(first, host)
        assert first.status(job)["limits"]["timeoutSeconds"] == 20  # the agent's --job-timeout
        answer = second.call("stop", jobID=job)  # through the front end that did not start it
        assert answer.status == 200 and answer.body["status"] == "stopped", answer.body
        assert_none_left(mark)  # stop answers only once every process of the job is gone
        assert first.status(job)["status"] == "stopped"


class CommandLine:
    """`python -m workerctl` pointed at a front end through its environment, as a user of its own would."""

    def __init__(self, front_end: Server, home: Path) -> None:
        self.front_end = front_end
        self.home = home

    def env(self, user: str) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.home), "PAGER": "cat",
                "WORKERCTL_SERVER": self.front_end.url, "WORKERCTL_TOKEN": self.front_end.users.tokens[user],
                "WORKERCTL_CA": str(self.front_end.tls.ca)}

    def __call__(self, *args: str, user: str = "alice") -> tuple[int, str, str]:
        """Run a command to its end; its exit status, stdout and stderr."""
        result = subprocess.run([sys.executable, "-m", "workerctl", *args], capture_output=True, text=True,
                                env=self.env(user), timeout=60)
        return result.returncode, result.stdout, result.stderr

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "workerctl", *args], env=self.env("alice"), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def job_started(output: tuple[int, str, str]) -> str:
    """The job ID from a successful `workerctl start`'s output, checking the rest of it."""
    code, out, err = output
    job = out.split()[1] if out.startswith("jobID: ") else ""
    assert (code, out, err) == (0, f"jobID: {job}\nstatus: created\n", ""), output
    return job


def test_a_starts_loader_variables_reach_only_the_job_on_an_agent(cluster: Cluster, tmp_path: Path) -> None:
    """The privileged path of an agent is the single host's: a library a job plants in its home, named by a
    start's LD_PRELOAD or LD_AUDIT through a front end, is loaded by the job alone, never as root."""
    marks = marks_directory(tmp_path / "marks")
    library = base64.b64encode(build_planted_library(marks).read_bytes()).decode()
    front_end = cluster.front_ends[0]
    planted = front_end.wait_final(front_end.start(f'echo {library} | base64 -d > "$HOME/x.so"', host="h1"))
    assert planted["exitCode"] == 0, planted
    host_path = str(cluster.agents["h1"].log_path.parent / "data-h1" / "homes" / "alice" / "x.so")
    for variable in ("LD_PRELOAD", "LD_AUDIT"):
        for path in (host_path, "/home/alice/x.so", "./x.so"):
            status = front_end.wait_final(front_end.start("echo ran", host="h1", env={variable: path}))
            assert ran_as_root(marks) == [] and status["output"].endswith("ran\n"), status
            if path != host_path:
                assert "planted library ran as uid " in status["output"], status


def test_the_command_line_through_a_front_end(cluster: Cluster, tmp_path: Path) -> None:
    front_end = cluster.front_ends[0]
    cli = CommandLine(front_end, tmp_path)
    mark = marker()
    job = job_started(cli("start", "--host-name", "h2", f"echo hello; sleep {mark}"))
    poll_until(lambda: front_end.status(job)["output"] == "hello\n", message="the job's output")
    assert cli("status", job) == (0, f"jobID: {job}\nstatus: running\nhost: h2\noutput:\nhello\n", "")
    assert cli("logs", job) == (0, "hello\n", "")
    code, out, _ = cli("list")
    assert code == 0 and any(line.split()[:2] == [job, "running"] for line in out.splitlines()), out
    for command in ("status", "logs", "wait", "stop"):
        assert cli(command, job, user="bob") == (NO_SUCH_JOB, "", "workerctl: no such job\n"), command
    code, _, err = cli("start", "--host-name", "nowhere", "true")
    assert code == REFUSED and err == "workerctl: no host nowhere is in the cluster now\n"

    follower, waiter = cli.spawn("logs", "-f", job), cli.spawn("wait", job)
    try:
        assert follower.stdout is not None and follower.stdout.readline() == "hello\n"
        poll_until(lambda: connected_to(waiter.pid, front_end.port), message="the waiter to connect")
        assert cli("stop", job) == (0, f"jobID: {job}\nstatus: stopped\n", "")
        assert_none_left(mark)
        assert follower.communicate(timeout=30) == ("", "") and follower.returncode == 2
        out, _ = waiter.communicate(timeout=30)
        assert waiter.returncode == 2 and out.startswith(f"jobID: {job}\nstatus: stopped\n"), out
    finally:
        for process in (follower, waiter):
            process.kill()
            process.wait()

    placed = job_started(cli("start", "echo placed"))
    assert cli("wait", placed) == (0, f"jobID: {placed}\nstatus: finished\nexitCode: 0\n", "")
    host = front_end.status(placed)["host"]
    assert host in ("h1", "h2")
    shown = f"jobID: {placed}\nstatus: finished\nexitCode: 0\nhost: {host}\noutput:\nplaced\n"
    assert cli("status", placed) == (0, shown, "")


def guard_of(agent: Agent) -> psutil.Process:
    """The agent's guard: the one of its children that leads a session of its own."""
    def find() -> psutil.Process | None:
        for child in psutil.Process(agent.process.pid).children():
            try:
                if os.getsid(child.pid) == child.pid:
                    return child
            except ProcessLookupError:
                continue
        return None

    return poll_until(find, message=f"agent {agent.name}'s guard")


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_start_pinned_to_a_host_that_just_died_is_answered_503_and_never_runs(
        tmp_path: Path, tls: Tls, users: Users, redis_server: RedisServer) -> None:
    """The front end sends the start to the host's queue while the dead host's lease still holds, waits for an
    answer that never comes and answers 503; the message expires with that wait, so the host's agent, started
    again with the same name, drops it. A cluster of its own: a dead host holding a lease would take starts
    placed by the module's other tests."""
    url = redis_server.url(prefix=f"dead-{secrets.token_hex(6)}")
    front_end = start_server(tmp_path / "front", tls, users, "--cluster", url, "--start-wait", str(_START_WAIT_SECONDS))
    # A lease longer than the start's wait, so that it surely still holds when the start arrives: the start
    # must not be refused as pinned to a host that is not in the cluster (400) but sent to the host's queue. The
    # agent started again below waits for it to lapse.
    agent = start_agent(tmp_path, url, "h1", host_timeout=_LEASE_SECONDS)
    try:
        guard = guard_of(agent)
        agent.kill_group()
        mark = marker()
        answer = front_end.call("start", command=f"echo ran; sleep {mark}", host="h1")
        assert answer.status == 503 and "no host of the cluster answered in time" in answer.body["error"], answer.body
        # The dead agent's guard kills what its jobs left by the data directory's cgroups and job tags: it must
        # be done before an agent runs jobs there again.
        poll_until(lambda: gone(guard), timeout=30, message="the dead agent's guard to finish")
        agent = start_agent(tmp_path, url, "h1", host_timeout=_LEASE_SECONDS)
        # The host's queue is taken in order, one message at a time: once a later start pinned to it has run,
        # the agent has taken the expired one.
        later = front_end.start("true", host="h1")
        assert front_end.wait_final(later)["host"] == "h1"
        assert [job["jobID"] for job in front_end.call("list").body["jobs"]] == [later]
        assert_none_left(mark)
    finally:
        agent.stop()
        front_end.stop()
