"""The serve process: start-up checks, clean shutdown, restarts, and crashes of each of its processes.
Nothing keeps running unsupervised and no record is lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support import (
    assert_none_left,
    cgroups_of,
    marker,
    mounts_under,
    poll_until,
    processes_with,
    reachable_by_jobs,
    sleepers,
    wait_none_left,
)
from workerctl.runtime.settings import UNUSABLE_SETTINGS_EXIT
from workerctl.server.serve import CRASH_REASON, FIRST_START_REASON


def server_processes(server):
    return [server.process.pid, server.child_pid("web"), server.child_pid("supervisor")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_ends_every_job_and_exits_cleanly(server_factory, sig):
    server = server_factory()
    mark = marker()
    running = [server.start(f"sleep {mark}") for _ in range(3)]
    stubborn = server.start(f"trap '' TERM INT; sleep {mark} & sleep {mark}")
    for job_id in running + [stubborn]:
        server.wait_running(job_id)
    processes = server_processes(server)
    assert server.stop(sig) == 0
    assert not processes_with(mark)
    assert not [pid for pid in processes if psutil.pid_exists(pid)]
    assert "Traceback" not in server.log()
    assert "the supervisor stopped: the server is shutting down" in server.log()
    assert "lost the supervisor" not in server.log()  # a shutdown is no crash

    restarted = server_factory(data_dir=server.data_dir)
    for job_id in running + [stubborn]:
        status = restarted.status(job_id)
        assert (status["status"], status["reason"]) == ("error", "server shut down")


def test_restart_keeps_finished_jobs_and_their_output(server_factory):
    server = server_factory()
    job_id = server.start("echo kept across restarts; exit 2")
    server.wait_final(job_id)
    server.stop()
    status = server_factory(data_dir=server.data_dir).status(job_id)
    assert (status["status"], status["exitCode"], status["output"]) == ("finished", 2, "kept across restarts\n")


def test_killing_serve_outright_takes_every_job_with_it(server_factory):
    server = server_factory()
    mark = marker()
    job_ids = [server.start(f"echo before; sleep {mark}"), server.start(f"setsid sleep {mark} & sleep {mark}")]
    # Running is not enough for the first: a job ended before its command began never prints a thing.
    poll_until(lambda: server.status(job_ids[0])["output"] == "before\n", message="the first job's output")
    poll_until(lambda: len(sleepers(mark)) == 3, message="the second job's sleeps")
    web, supervisor = server.child_pid("web"), server.child_pid("supervisor")
    server.process.kill()
    server.process.wait()
    poll_until(lambda: not psutil.pid_exists(web) and not psutil.pid_exists(supervisor), timeout=30,
               message="the front end and the supervisor to exit")
    assert_none_left(mark)  # the supervisor ended every job before it exited

    # The supervisor is told of serve's death by the kernel and ends the jobs itself.
    restarted = server_factory(data_dir=server.data_dir)
    statuses = [restarted.status(job_id) for job_id in job_ids]
    assert {(status["status"], status["reason"]) for status in statuses} == {("error", "server shut down")}
    assert statuses[0]["output"] == "before\n"


def test_jobs_a_dead_server_left_running_are_ended_and_settled_at_the_next_start(server_factory):
    # Without the sandbox, so without keepers: in the sandbox each job's keeper ends it as soon as its supervisor
    # is gone (test_live_restore.py), and nothing is left for the next start to end.
    server = server_factory("--sandbox", "off")
    mark = marker()
    job_id = server.start(f"echo before; sleep {mark}")
    poll_until(lambda: server.status(job_id)["output"] == "before\n")
    # Kill serve and the supervisor at once: nobody is left to end the job, as after a power cut or OOM kill.
    for pid in (server.child_pid("supervisor"), server.process.pid):
        os.kill(pid, signal.SIGKILL)
    server.process.wait()
    assert processes_with(mark)
    restarted = server_factory("--sandbox", "off", data_dir=server.data_dir)
    status = restarted.status(job_id)  # settled before the new server serves
    assert (status["status"], status["reason"], status["output"]) == ("error", FIRST_START_REASON, "before\n")
    wait_none_left(mark)  # and its processes ended meanwhile, in the background
    assert restarted.stop() == 0
    assert not cgroups_of(server.data_dir)  # the dead run's too


def test_a_killed_supervisor_is_invisible_to_clients_and_a_new_one_settles_its_jobs(server_factory):
    server = server_factory()
    mark = marker()
    job_id = server.start(f"sleep {mark}")
    server.wait_running(job_id)
    old_supervisor = server.child_pid("supervisor")
    os.kill(old_supervisor, signal.SIGKILL)
    # Sent while no supervisor runs: each waits for the new one instead of failing.
    started = server.call("start", command="echo alive")
    assert started.status == 200
    status = server.status(job_id)
    assert (status["status"], status["reason"]) == ("error", CRASH_REASON)
    assert server.wait_final(started.body["jobID"])["output"] == "alive\n"
    assert server.child_pid("supervisor") != old_supervisor
    wait_none_left(mark)  # the dead one's processes are ended in the background


def test_past_the_unavailable_wait_a_request_gets_503(server_factory):
    server = server_factory("--unavailable-wait", "0")
    job_id = server.start(f"sleep {marker()}")
    server.wait_running(job_id)
    # serve, which starts a new supervisor, is held still meanwhile: on a loaded machine the restart could
    # otherwise come before any request does.
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        os.kill(server.child_pid("supervisor"), signal.SIGKILL)
        answer = poll_until(lambda: (lambda answer: answer if answer.status != 200 else None)(
            server.call("status", jobID=job_id)), message="an answer without the supervisor")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert answer.status == 503 and "supervisor" in answer.body["error"], answer


def test_a_server_stopped_while_its_supervisor_is_dead_leaves_nothing_behind(server_factory):
    server = server_factory()
    mark = marker()
    server.wait_running(server.start(f"sleep {mark}"))
    os.kill(server.child_pid("supervisor"), signal.SIGKILL)
    assert server.stop() == 0  # most often before a new supervisor has started (it waits a fifth of a second)
    assert_none_left(mark)
    assert not cgroups_of(server.data_dir)
    assert not mounts_under(server.data_dir)


def test_a_killed_front_end_is_restarted_and_jobs_run_on(server_factory):
    server = server_factory()
    job_id = server.start("sleep 1.5; echo survived")
    server.wait_running(job_id)
    old_front_end = server.child_pid("web")
    os.kill(old_front_end, signal.SIGKILL)
    poll_until(lambda: server.child_pid("web") != old_front_end, timeout=5, message="a new front end")
    status = server.wait_final(job_id)
    assert (status["status"], status["output"]) == ("finished", "survived\n")


def run_serve(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "workerctl", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("workerctl: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize("flags, status, contains", [
    (["--port", "99999"], 64, "port must be a whole number from 0 to 65535"),
    (["--job-timeout", "0"], 64, "job-timeout must be a positive"),
    (["--job-timeout", "soon"], 64, "job-timeout must be a positive number of seconds, not 'soon'"),
    (["--max-jobs", "0"], 64, "max-jobs must be a whole number, at least 1"),
    (["--containment", "docker"], 64, "containment must be"),
    (["--cert", "/nonexistent/cert.pem"], 78, "cannot use the certificate"),
    (["--users", "/nonexistent/users.toml"], 78, "users"),
    (["--job-user", "no-such-user-here"], 78, "no user named"),
    (["--config", "/nonexistent/server.toml"], 78, "cannot read settings file"),
    (["--audit-log", "/nonexistent/audit.jsonl"], 78, "cannot write the audit log"),
    (["--rate-limit", "-1"], 64, "rate-limit must be zero or more"),
    (["--require-client-cert"], 64, "require-client-cert needs --client-ca"),
    (["--client-ca", "/nonexistent/ca.pem"], 78, "cannot use the client CA certificate"),
])
def test_bad_settings_fail_at_start_with_one_line(tmp_path, flags, status, contains):
    result = run_serve("--data-dir", str(tmp_path / "data"), "--port", "0", *flags)
    assert result.returncode == status, result.stderr
    assert contains in one_line_error(result)


def test_settings_file_is_read_and_flags_win(tmp_path, tls, users):
    config = tmp_path / "server.toml"
    config.write_text(f'port = 99999\ncert = "{tls.cert}"\n')
    assert "port must be a whole number from 0 to 65535" in one_line_error(run_serve("--config", str(config)))
    config.write_text('colour = "blue"\n')
    assert "unknown setting 'colour'" in one_line_error(run_serve("--config", str(config)))


def test_an_unwritable_data_dir_fails_at_start(tmp_path, tls, users):
    data_dir = tmp_path / "data"
    data_dir.write_text("a file, not a directory")
    result = run_serve("--port", "0", "--data-dir", str(data_dir), "--cert", str(tls.cert), "--key",
                       str(tls.key), "--users", str(users.file))
    assert result.returncode == UNUSABLE_SETTINGS_EXIT
    assert "data directory" in one_line_error(result)


def test_two_servers_cannot_share_a_data_dir(server_factory, tls, users):
    server = server_factory()
    result = run_serve("--port", "0", "--data-dir", str(server.data_dir), "--cert", str(tls.cert), "--key",
                       str(tls.key), "--users", str(users.file))
    assert result.returncode == UNUSABLE_SETTINGS_EXIT
    assert "in use by another workerctl server" in one_line_error(result)


def test_a_port_in_use_fails_at_start(server_factory, tls, users, tmp_path):
    server = server_factory()
    result = run_serve("--port", str(server.port), "--data-dir", str(reachable_by_jobs(tmp_path) / "other"), "--cert",
                       str(tls.cert), "--key", str(tls.key), "--users", str(users.file))
    assert result.returncode == UNUSABLE_SETTINGS_EXIT
    assert "cannot listen on" in one_line_error(result)


def test_a_data_dir_jobs_cannot_reach_fails_at_start(tmp_path, tls, users):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    result = run_serve("--port", "0", "--data-dir", str(private / "data"), "--cert", str(tls.cert), "--key",
                       str(tls.key), "--users", str(users.file))
    assert result.returncode == UNUSABLE_SETTINGS_EXIT
    assert "jobs run as other users cannot reach" in one_line_error(result)


def test_jobs_can_use_their_home_and_tmpdir(server_factory):
    server = server_factory()
    status = server.wait_final(server.start('cd "$HOME" && echo home > file && cat file && mktemp && '
                                            'echo ok > "$TMPDIR/file" && cat "$TMPDIR/file"'))
    assert status["exitCode"] == 0 and status["output"].endswith("ok\n")


def test_two_servers_on_one_host_give_their_jobs_different_user_ids(server_factory, tmp_path):
    first, second = server_factory(), server_factory(data_dir=reachable_by_jobs(tmp_path) / "second")
    ranges = []
    for server in (first, second):
        low, high = map(int, re.search(r"IDs (\d+) to (\d+)", server.log()).groups())
        uid = int(server.wait_final(server.start("id -u"))["output"])
        assert low <= uid <= high
        ranges.append(range(low, high + 1))
    assert not set(ranges[0]) & set(ranges[1])  # neither hands out, nor sweeps as strays, the other's IDs


def test_the_oom_killer_picks_jobs_before_the_server(server_factory):
    server = server_factory()
    assert server.wait_final(server.start("cat /proc/self/oom_score_adj"))["output"] == "500\n"
    for name in ("web", "supervisor"):
        # -800 where the server may lower its own score (CAP_SYS_RESOURCE); else it stays 0, and says so.
        assert int(Path(f"/proc/{server.child_pid(name)}/oom_score_adj").read_text()) in (-800, 0)
