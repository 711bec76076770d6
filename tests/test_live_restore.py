"""Live restore (`serve --live-restore`): running jobs outlive a stop, a kill -9 or a crash of the server and
are taken back by its next start, output whole, time limit from their real start, stop ending all of them; jobs
that ended meanwhile are recorded as they ended; waiting jobs wait on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from redis_server import free_port
from support import (
    assert_none_left,
    kill_all,
    marker,
    mounts_under,
    poll_until,
    processes_with,
    release,
    require_namespaces,
    sleepers,
    wait_none_left,
)
from workerctl.store.layout import DataLayout

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def namespaces() -> None:
    require_namespaces()


@pytest.fixture
def new_mark(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes marks for a test's jobs. What a failed test left running under the jobs' keepers, with no server to
    end it, is ended at the end of the test (after its servers: ask for this fixture before server_factory), and
    the homes it kept mounted are unmounted."""
    made: list[str] = []

    def make() -> str:
        made.append(marker())
        return made[-1]
    yield make
    for mark in made:
        kill_all(mark)
    for mark in made:
        wait_none_left(mark)
    for point in mounts_under(tmp_path):
        subprocess.run(["umount", "--lazy", point], check=False)


def printer(flag: str) -> str:
    """A job printing a numbered line every 0.2 s until the file `flag` appears in its home, then exiting 0."""
    return f'i=0; while [ ! -e "$HOME/{flag}" ]; do i=$((i+1)); echo line $i; sleep 0.2; done; echo done'


def let_end(data_dir: Path, flag: str, user: str = "alice") -> None:
    """Make the file a `printer` job waits for, in its home as the host sees it."""
    (DataLayout(data_dir).home(user) / flag).touch()


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def keeper_file(server, job_id: str, name: str) -> Path:
    return DataLayout(server.data_dir).keeper(job_id) / name


def lines_whole(output: str) -> bool:
    lines = output.splitlines()
    return lines[-1] == "done" and lines[:-1] == [f"line {number}" for number in range(1, len(lines))]


def test_jobs_run_on_across_stops_kills_and_crashes_of_the_server(new_mark, server_factory):
    # One port for every run, so that a follower (`logs -f`, which asks again while the server restarts) goes on.
    flags = ("--live-restore", "--max-jobs", "3", "--port", str(free_port()))
    server = server_factory(*flags)
    marks = {name: new_mark() for name in ("printer", "ends", "tree")}
    printing = server.start(printer(marks["printer"]))
    follower = subprocess.Popen(
        [sys.executable, "-m", "workerctl", "logs", "-f", printing, "--retry", "60"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "WORKERCTL_SERVER": server.url,
                                                "WORKERCTL_TOKEN": server.users.tokens["alice"],
                                                "WORKERCTL_CA": str(server.tls.ca)})
    ending = server.start(f"echo before; sleep {marks['ends']}; echo after; exit 3")
    tree = server.start(f"setsid sleep {marks['tree']} & sleep {marks['tree']}")
    waiting = server.start("echo waited")  # no slot left: it waits
    for job_id in (printing, ending, tree):
        server.wait_running(job_id)
    assert server.status(waiting)["status"] == "created"
    poll_until(lambda: len(sleepers(marks["tree"])) == 2 and sleepers(marks["ends"]), message="the jobs' sleeps")
    server.stop()
    assert "Traceback" not in server.log()

    # No server runs: the printer's lines go to its keeper's spool, and a job ends with its exit code.
    poll_until(lambda: keeper_file(server, printing, "spool").exists() and keeper_file(
        server, printing, "spool").stat().st_size > 0, message="output written while no server ran")
    release(marks["ends"])
    poll_until(lambda: keeper_file(server, ending, "exit").exists(), message="the job's end, recorded by its keeper")

    restarted = server_factory(*flags, data_dir=server.data_dir)
    status = restarted.status(ending)
    assert (status["status"], status["exitCode"], status["reason"], status["output"]) == (
        "finished", 3, None, "before\nafter\n"), status
    assert restarted.status(printing)["status"] == "running"
    assert restarted.wait_final(waiting)["output"] == "waited\n"  # it waited, and took the freed slot

    # kill -9 of serve: its supervisor is told by the kernel, and leaves the jobs to their keepers again.
    restarted.process.kill()
    restarted.process.wait()
    third = server_factory(*flags, data_dir=server.data_dir)
    assert third.status(tree)["status"] == "running"
    # kill -9 of the supervisor: serve starts another, which takes the jobs back.
    old_supervisor = third.child_pid("supervisor")
    os.kill(old_supervisor, signal.SIGKILL)
    poll_until(lambda: third.child_pid("supervisor") != old_supervisor, message="a new supervisor")
    assert third.status(tree)["status"] == "running"

    stopped = third.call("stop", jobID=tree)
    assert (stopped.status, stopped.body["status"]) == (200, "stopped"), stopped.body
    assert_none_left(marks["tree"])  # the setsid escapee too

    let_end(server.data_dir, marks["printer"])
    status = third.wait_final(printing)
    assert (status["status"], status["exitCode"]) == ("finished", 0), status
    assert lines_whole(status["output"]), status["output"]
    followed, complaints = follower.communicate(timeout=60)
    assert (follower.returncode, followed) == (0, status["output"]), complaints
    assert third.stop() == 0
    assert "Traceback" not in third.log() + restarted.log()
    assert not list(DataLayout(server.data_dir).keepers_root.iterdir())


def test_a_time_limit_counts_from_the_jobs_real_start_across_a_restart(new_mark, server_factory):
    server = server_factory("--live-restore")
    mark = new_mark()
    counted = server.start(f"sleep {mark}", limits={"timeoutSeconds": 2})
    kept = server.start(f"sleep {mark}", limits={"timeoutSeconds": 1})
    started = moment(server.wait_running(counted)["startedAt"])
    server.wait_running(kept)
    server.stop()
    # While no server runs, the keeper ends the job at its time limit.
    poll_until(lambda: keeper_file(server, kept, "exit").exists(), message="the keeper to end the job")
    assert "ended-by time-limit" in keeper_file(server, kept, "exit").read_text()
    poll_until(lambda: time.time() > started + 1.5, message="most of the time limit to pass")
    restarted = server_factory("--live-restore", data_dir=server.data_dir)
    status = restarted.status(kept)
    assert (status["status"], status["reason"], status["signal"]) == (
        "error", "time limit of 1 s exceeded", "SIGTERM"), status
    status = restarted.wait_final(counted)
    assert (status["status"], status["reason"]) == ("error", "time limit of 2 s exceeded"), status
    # From its real start (by the new supervisor, or by its keeper if the restart took longer): counted from the
    # restart, it would have ended later than this. The keeper counts from its own start, a few milliseconds
    # before the record's (stamped once the spawn returns), and the kernel's file times are coarse: 0.1 s early.
    assert 1.9 <= moment(status["endedAt"]) - moment(status["startedAt"]) < 3.5, status
    assert_none_left(mark)


def test_without_live_restore_a_dead_supervisors_jobs_end_at_once(server_factory):
    """The keeper ends its job as soon as its supervisor is gone, with no server left to do it."""
    server = server_factory()
    mark = marker()
    job_id = server.start(f"sleep {mark}")
    server.wait_running(job_id)
    os.kill(server.process.pid, signal.SIGSTOP)  # no serve to end the orphans or start a new supervisor
    try:
        os.kill(server.child_pid("supervisor"), signal.SIGKILL)
        poll_until(lambda: not processes_with(mark), message="the keeper to end the job")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert server.wait_final(job_id)["status"] == "error"


def test_live_restore_needs_the_sandbox(server_factory):
    server = server_factory("--live-restore", "--sandbox", "off", ready=False)
    assert server.process.wait(30) == 78
    assert "live restore needs the sandbox" in server.log()
