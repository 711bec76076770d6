"""No process outlives its job: stop, the time limit and a job's own exit end every process it started, however
it forked, under both kinds of containment."""

from __future__ import annotations

import time

import pytest
from facilities import needs
from support import assert_none_left, marker, poll_until, sleepers, start_server
from workerctl.supervisor.cgroups import CgroupContainment

pytestmark = pytest.mark.slow  # a server for each containment; time limits; hundreds of jobs for a rare race

# cgroups; process trees with a user ID per job; process trees with every job as one shared account.
CONTAINMENTS = {"cgroup": ["--containment", "cgroup"], "process": ["--containment", "process"],
                "process-shared-user": ["--containment", "process", "--job-user", "nobody"]}


def cgroups_problem() -> str | None:
    """Why jobs cannot have a cgroup each here, or None."""
    try:
        CgroupContainment.probe("test-probe").close()
        return None
    except OSError as error:
        return f"no writable cgroup v2 hierarchy ({error})"


@pytest.fixture(scope="module", params=CONTAINMENTS)
def server(request, tmp_path_factory, tls, users):
    if request.param == "cgroup":
        needs("cgroups", cgroups_problem())
    running = start_server(tmp_path_factory.mktemp(request.param), tls, users, *CONTAINMENTS[request.param],
                           "--job-timeout", "1.5", "--max-job-timeout", "60", "--kill-grace", "0.5")
    assert f"containment: {'one cgroup per job' if request.param == 'cgroup' else 'following process'}" \
        in running.log()
    running.containment = request.param
    yield running
    assert running.stop() == 0


# Each shell snippet starts processes that try to get away in a different way; all sleep with the marker, and
# the number says how many such sleeps it starts.
ESCAPES = {
    "grandchildren": ("sh -c 'sleep {m} & sleep {m}' & sleep {m}", 3),
    "new session": ("setsid sleep {m} & sleep {m}", 2),
    "double fork": ("(setsid sh -c 'sleep {m} &' &); sleep {m}", 2),
    "ignores SIGTERM": ("trap '' TERM; sh -c \"trap '' TERM; sleep {m}\" & sleep {m}", 2),
    "empty environment": ("env -i sh -c 'sleep {m} &'; sleep {m}", 2),
}


@pytest.mark.parametrize("escape", ESCAPES)
def test_stop_ends_every_process(server, escape):
    mark = marker()
    snippet, sleeps = ESCAPES[escape]
    job_id = server.start(snippet.format(m=mark))
    poll_until(lambda: len(sleepers(mark)) == sleeps, message="every escape to happen")
    answer = server.call("stop", jobID=job_id)
    assert answer.body["status"] == "stopped"
    assert_none_left(mark)


def test_time_limit_ends_every_process(server):
    """The escapes all at once, so the time limit is waited out once rather than once for each."""
    marks = {escape: marker() for escape in ("grandchildren", "double fork", "ignores SIGTERM")}
    jobs = {escape: server.start(ESCAPES[escape][0].format(m=mark)) for escape, mark in marks.items()}
    for escape, job_id in jobs.items():
        status = server.wait_final(job_id, timeout=20)
        assert (status["status"], status["reason"]) == ("error", "time limit of 1.5 s exceeded"), escape
        assert_none_left(marks[escape])


LEFT_BEHIND = {
    "a child": "sleep {m} & exit 5",
    "new session": "setsid sleep {m} & exit 5",
    "double fork": "(setsid sh -c 'sleep {m} &' &); exit 5",
}


@pytest.mark.parametrize("left_behind", LEFT_BEHIND)
def test_a_job_that_exits_leaving_processes_behind_has_them_ended(server, left_behind):
    mark = marker()
    # A minute of its own: this module's 1.5 s time limit once ended one, its exit seen 1.95 s after its start,
    # with two copies of the suite running; what is checked here is what the job leaves, not how soon it ends.
    job_id = server.start(LEFT_BEHIND[left_behind].format(m=mark), limits={"timeoutSeconds": 60})
    status = server.wait_final(job_id)
    assert (status["status"], status["exitCode"]) == ("finished", 5)
    assert_none_left(mark)


def test_a_process_that_forges_another_jobs_tag_still_ends_with_its_own_job(server):
    if server.containment == "process-shared-user":
        pytest.skip("with one shared account and no cgroups, a process may claim to be another job's")
    mark, forger = marker(), marker()
    other = server.start(f"sleep {mark}", user="bob")
    job_id = server.start(f"(setsid env WORKERCTL_JOB_ID={other} sleep {forger} &); exit 0")
    server.wait_final(job_id)
    assert_none_left(forger)
    server.call("stop", user="bob", jobID=other)


def test_a_daemon_ignoring_sigterm_is_killed_after_the_grace_period(server):
    mark = marker()
    job_id = server.start(f"(trap '' TERM; setsid sleep {mark} &); exit 0")
    status = server.wait_final(job_id)
    # Ended by the grace period's SIGKILL, not by the time limit (which would make it an error).
    assert status["status"] == "finished" and status["exitCode"] == 0
    assert_none_left(mark)


def test_a_fork_loop_is_ended(server):
    mark = marker()
    job_id = server.start(f"while true; do sleep {mark} & done")
    poll_until(lambda: len(sleepers(mark)) >= 5, message="the loop to fork")
    # On a busy machine the module's short time limit may end it first; either way, it must end whole.
    assert server.call("stop", jobID=job_id).body["status"] in ("stopped", "error")
    assert_none_left(mark)


def test_output_written_by_a_daemon_before_the_kill_is_kept(server_factory):
    """Once the job's shell has exited, a process it left writes in the grace period before it would be killed
    (it ignores SIGTERM, and writes only once the shell is gone): that is the job's output too. Without the
    sandbox, whose PID namespace ends with the shell; with a long grace, which the process does not wait out."""
    server = server_factory("--sandbox", "off", "--kill-grace", "60")
    job_id = server.start("trap '' TERM; (while kill -0 $$ 2>/dev/null; do sleep 0.01; done; echo from-the-daemon) & "
                          "echo from-the-job")
    status = server.wait_final(job_id)
    assert (status["status"], status["output"]) == ("finished", "from-the-job\nfrom-the-daemon\n")


def test_many_jobs_time_out_together(server):
    mark = marker()
    job_ids = [server.start(f"sleep {mark}") for _ in range(30)]
    statuses = [server.wait_final(job_id, timeout=15) for job_id in job_ids]
    assert {status["status"] for status in statuses} == {"error"}
    assert_none_left(mark)


def test_a_fork_bomb_stops_at_the_process_limit(server_factory):
    server = server_factory("--max-job-processes", "40")
    mark = marker()
    job_id = server.start(f"for i in $(seq 100); do sleep {mark} & done; wait")
    status = server.wait_final(job_id)
    assert status["status"] == "finished"
    assert "fork" in status["output"].lower() or "resource temporarily unavailable" in status["output"].lower()
    assert_none_left(mark)
    other = server.start(f"for i in $(seq 30); do sleep {mark} & done; echo started all")
    assert server.wait_final(other)["output"] == "started all\n"


def test_a_process_started_while_the_job_is_ending_gets_sigterm_too(server_factory):
    grace = 40
    server = server_factory("--kill-grace", str(grace))
    waiting, newcomer = marker(), marker()
    # On SIGTERM the shell starts one more process and exits: that newcomer must get SIGTERM as well,
    # not wait out the grace period for SIGKILL.
    job_id = server.start(f"trap 'echo ending; sleep {newcomer} & exit 0' TERM; sleep {waiting} & wait")
    poll_until(lambda: sleepers(waiting), message="the job to set its trap and start")
    started = time.monotonic()
    assert server.call("stop", jobID=job_id).body["status"] == "stopped"
    assert time.monotonic() - started < grace  # it did not wait out the grace period for SIGKILL
    assert server.status(job_id)["output"] == "ending\n"
    assert_none_left(waiting)
    assert_none_left(newcomer)


def test_a_child_forked_as_its_parent_dies_is_ended_too(server):
    # A process that forks just before it dies leaves a child a look at the job's processes can miss: the
    # job is over only when the kernel (or a second look) says nothing is left. Missed, this showed in about
    # one job in a hundred.
    # The race is each job's own, so the jobs run in batches at once: as many tries, in a fraction of the time.
    batches, batch = (10, 30) if server.containment == "cgroup" else (3, 10)
    for _ in range(batches):
        mark = marker()
        # Each its own minute: 1.5 s, this module's time limit, is short for 30 jobs at once on a loaded machine.
        jobs = [server.start(f"(setsid sh -c 'sleep {mark} &' &); exit 5", limits={"timeoutSeconds": 60})
                for _ in range(batch)]
        ended = [server.wait_final(job_id) for job_id in jobs]
        assert [status["exitCode"] for status in ended] == [5] * batch, [s for s in ended if s["exitCode"] != 5]
        assert_none_left(mark)


def test_the_job_process_cap_is_per_job_though_a_users_jobs_share_an_id(server_factory):
    server = server_factory("--job-processes", "10")
    mark = marker()
    jobs = [server.start(f"for i in 1 2 3 4 5; do sleep {mark} & done; echo ready; wait") for _ in range(3)]
    for job_id in jobs:
        poll_until(lambda: server.status(job_id)["output"] == "ready\n", message="each job's five processes")
    for job_id in jobs:
        server.call("stop", jobID=job_id)
