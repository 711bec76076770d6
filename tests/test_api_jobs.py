"""Every action and status over real HTTPS: start, status, stop, list, output, exit codes, ownership."""

from __future__ import annotations

import time

import psutil
import pytest
from support import (
    assert_none_left,
    marker,
    poll_until,
    processes_with,
    release,
    require_namespaces,
)
from workerctl.protocol.jobs import MAX_WAIT_SECONDS, is_job_id


def test_start_answers_created_with_an_unguessable_id(server):
    answer = server.call("start", command="true")
    assert answer.status == 200
    assert answer.body == {"jobID": answer.body["jobID"], "status": "created"}
    assert is_job_id(answer.body["jobID"])
    assert answer.headers["Content-Type"] == "application/json"


def test_job_ids_are_never_numbers_or_literals(server):
    ids = {server.start("true") for _ in range(20)}
    assert len(ids) == 20
    for job_id in ids:
        assert job_id[0].isalpha() and job_id.isalnum() and job_id not in ("True", "False", "None")


def test_finished_job_reports_output_and_exit_code(server):
    job_id = server.start("echo hello; echo world")
    status = server.wait_final(job_id)
    assert status["status"] == "finished"
    assert status["exitCode"] == 0
    assert status["output"] == "hello\nworld\n"
    assert status["signal"] is None and status["reason"] is None
    assert status["command"] == "echo hello; echo world"
    assert status["createdAt"] <= status["startedAt"] <= status["endedAt"]


def test_nonzero_exit_code_is_finished_with_that_code(server):
    status = server.wait_final(server.start("echo failing >&2; exit 3"))
    assert (status["status"], status["exitCode"], status["output"]) == ("finished", 3, "failing\n")


def test_command_not_found_is_finished_with_127(server):
    status = server.wait_final(server.start("no-such-command-here"))
    assert status["status"] == "finished" and status["exitCode"] == 127
    assert "not found" in status["output"]


def test_a_job_killed_by_a_signal_of_its_own_reports_the_signal(server):
    status = server.wait_final(server.start("kill -KILL $$"))
    assert status["status"] == "finished"
    assert status["exitCode"] is None and status["signal"] == "SIGKILL"


def test_stdout_and_stderr_keep_their_order(server):
    status = server.wait_final(server.start("for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"))
    assert status["output"].split() == [f"{kind}{i}" for i in range(1, 6) for kind in ("out", "err")]


def test_invalid_utf8_is_replaced_not_refused(server):
    status = server.wait_final(server.start(r"printf 'ok \377\376 done\n'"))
    assert status["output"] == "ok \ufffd\ufffd done\n"


def test_output_over_64k_does_not_stall_the_job(server):
    status = server.wait_final(server.start("head -c 300000 /dev/zero | tr '\\0' x"))
    assert status["status"] == "finished" and status["outputBytes"] == 300000
    assert status["output"] == "x" * 300000


def test_job_runs_in_its_home_with_a_clean_environment(server):
    status = server.wait_final(server.start('pwd; echo "$HOME"; umask; env | sort | cut -d= -f1 | tr "\\n" " "'))
    lines = status["output"].splitlines()
    assert lines[0] == lines[1] and (lines[0] == "/home/alice" or lines[0].endswith(status["jobID"]))
    assert lines[2] == "0077"
    assert set(lines[3].split()) <= {"HOME", "LANG", "LOGNAME", "PATH", "PWD", "SHELL", "TMPDIR", "USER",
                                     "WORKERCTL_INSTANCE", "WORKERCTL_JOB_ID", "OLDPWD", "SHLVL", "_"}


def test_a_start_may_give_the_job_environment_variables(server):
    job_id = server.start('echo "$GREETING|$EMPTY|$PATH"', env={"GREETING": "hello world", "EMPTY": "",
                                                                 "PATH": "/usr/bin:/bin"})
    status = server.wait_final(job_id)
    assert status["output"] == "hello world||/usr/bin:/bin\n"
    assert status["env"] == {"GREETING": "hello world", "EMPTY": "", "PATH": "/usr/bin:/bin"}
    listed = server.call("list").body["jobs"][0]
    assert "env" not in listed  # what a start gave its job is shown to its owner one job at a time


@pytest.mark.parametrize("env, says", [
    ({"WORKERCTL_JOB_ID": "j"}, "names starting WORKERCTL_ are the server's"),
    ({"1ABC": "x"}, "env names must be shell identifiers"),
    ({"A-B": "x"}, "env names must be shell identifiers"),
    ({"A\n": "x"}, "env names must be shell identifiers"),
    ({"A": 1}, "env values must be strings"),
    ({"A": "x\u0000y"}, "env values must be strings without NUL"),
    (["A=1"], "env must be an object"),
])
def test_environment_variables_a_job_cannot_have_are_refused(server, env, says):
    answer = server.call("start", command="true", env=env)
    assert answer.status == 400 and says in answer.body["error"], answer.body


def test_labels_are_shown_and_select_jobs_in_list(server):
    mark = marker()
    nightly = server.start("true", labels=[f"nightly-{mark}", "db"])
    server.start("true", labels=[f"other-{mark}"])
    server.start("true", user="bob", labels=[f"nightly-{mark}"])
    assert server.status(nightly)["labels"] == [f"nightly-{mark}", "db"]
    found = server.call("list", label=f"nightly-{mark}").body["jobs"]
    assert [job["jobID"] for job in found] == [nightly] and found[0]["labels"] == [f"nightly-{mark}", "db"]
    assert server.call("list", label="no such label").body["jobs"] == []


@pytest.mark.parametrize("labels, says", [
    ("db", "labels must be a list"),
    ([""], "labels[0] must be a non-empty string"),
    (["a\nb"], "none of them control characters"),
    (["ab\n"], "none of them control characters"),
    (["x" * 65], "at most 64 characters"),
    ([str(number) for number in range(17)], "at most 16 labels"),
])
def test_labels_a_job_cannot_have_are_refused(server, labels, says):
    answer = server.call("start", command="true", labels=labels)
    assert answer.status == 400 and says in answer.body["error"], answer.body


def test_stdin_is_empty(server):
    assert server.wait_final(server.start("cat; echo done"))["output"] == "done\n"


def test_stop_a_running_job_kills_it_and_answers_stopped(server):
    mark = marker()
    job_id = server.start(f"sleep {mark}")
    server.wait_running(job_id)
    answer = server.call("stop", jobID=job_id)
    assert answer.status == 200 and answer.body == {"jobID": job_id, "status": "stopped"}
    assert_none_left(mark)
    status = server.status(job_id)
    assert status["status"] == "stopped" and status["signal"] == "SIGTERM"


def test_stopping_a_finished_job_leaves_it_finished(server):
    job_id = server.start("exit 4")
    server.wait_final(job_id)
    answer = server.call("stop", jobID=job_id)
    assert answer.status == 200 and answer.body == {"jobID": job_id, "status": "finished"}
    assert server.status(job_id)["exitCode"] == 4


def test_stopping_twice_answers_stopped_twice(server):
    job_id = server.start(f"sleep {marker()}")
    server.wait_running(job_id)
    assert server.call("stop", jobID=job_id).body["status"] == "stopped"
    assert server.call("stop", jobID=job_id).body["status"] == "stopped"


def test_another_users_job_is_indistinguishable_from_no_job(server):
    job_id = server.start(f"sleep {marker()}")
    missing = "j" + "a" * 26
    for action in ("status", "stop"):
        theirs = server.call(action, user="bob", jobID=job_id)
        nobodys = server.call(action, user="bob", jobID=missing)
        assert (theirs.status, theirs.body) == (nobodys.status, nobodys.body) == (404, {"error": "no such job"})
    assert server.status(job_id)["status"] == "running"
    assert job_id not in [job["jobID"] for job in server.call("list", user="bob").body["jobs"]]
    server.call("stop", jobID=job_id)


def test_list_shows_own_jobs_newest_first_and_filters_by_status(server):
    first = server.start("true", user="bob")
    second = server.start(f"sleep {marker()}", user="bob")
    server.wait_final(first, user="bob")
    server.wait_running(second, user="bob")
    jobs = server.call("list", user="bob").body["jobs"]
    assert [job["jobID"] for job in jobs][:2] == [second, first]
    assert "output" not in jobs[0]
    running = server.call("list", user="bob", status="running").body["jobs"]
    assert [job["jobID"] for job in running] == [second]
    assert len(server.call("list", user="bob", limit=1).body["jobs"]) == 1
    server.call("stop", user="bob", jobID=second)


def test_token_may_come_in_the_authorization_header(server):
    answer = server.raw(body=b'{"action": "list"}',
                        headers={"Authorization": f"Bearer {server.users.tokens['alice']}"})
    assert answer.status == 200 and "jobs" in answer.body


def test_idempotency_key_returns_the_same_job(server):
    command = f"sleep {marker()}"
    first = server.call("start", command=command, idempotencyKey="nightly-2026-11-27")
    again = server.call("start", command=command, idempotencyKey="nightly-2026-11-27")
    assert again.body["jobID"] == first.body["jobID"] and again.body["status"] in ("created", "running")
    other_user = server.call("start", user="bob", command="true", idempotencyKey="nightly-2026-11-27")
    assert other_user.body["jobID"] != first.body["jobID"]
    server.call("stop", jobID=first.body["jobID"])


def test_an_idempotency_key_used_for_another_command_is_a_conflict(server):
    first = server.call("start", command="true", idempotencyKey="weekly")
    other = server.call("start", command="false", idempotencyKey="weekly")
    assert other.status == 409 and first.body["jobID"] in other.body["error"]


def test_status_from_an_offset_returns_only_new_output(server):
    mark = marker()
    job_id = server.start(f"echo one; sleep {mark}; echo two")
    first = poll_until(lambda: (lambda s: s if s["output"] else None)(server.status(job_id)))
    assert first["output"] == "one\n" and first["nextOffset"] == 4
    release(mark)
    final = server.wait_final(job_id)
    rest = server.status(job_id, offset=first["nextOffset"])
    assert rest["output"] == "two\n" and rest["nextOffset"] == final["outputBytes"] == 8


def test_status_wait_answers_as_soon_as_output_arrives(server):
    job_id = server.start("sleep 0.5; echo late; sleep 5")
    server.wait_running(job_id)
    answer = server.status(job_id, offset=0, wait=10)
    assert answer["output"] == "late\n" and answer["status"] == "running"
    server.call("stop", jobID=job_id)


def test_status_wait_answers_when_the_job_ends(server):
    job_id = server.start("sleep 0.3")
    server.wait_running(job_id)
    assert server.status(job_id, wait=10)["status"] == "finished"


def test_status_wait_gives_up_after_wait_seconds(server):
    job_id = server.start(f"sleep {marker()}")
    server.wait_running(job_id)
    answer = server.status(job_id, wait=0.3)
    assert answer["status"] == "running" and answer["output"] == ""
    server.call("stop", jobID=job_id)


def test_multibyte_characters_are_never_split_across_offsets(server):
    mark = marker()
    job_id = server.start(rf"printf '\342\202'; sleep {mark}; printf '\254 euro\n'")
    first = poll_until(lambda: (lambda s: s if s["outputBytes"] else None)(server.status(job_id)))
    assert first["output"] == "" and first["nextOffset"] == 0  # half a "€" is held back
    release(mark)
    server.wait_final(job_id)
    assert server.status(job_id, offset=first["nextOffset"])["output"] == "\u20ac euro\n"


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_no_job_can_touch_another_users_job(server_factory, sandbox):
    if sandbox == "on":
        require_namespaces()
    server = server_factory("--sandbox", sandbox)
    mark = marker()
    victim = server.start(f"sleep {mark}", user="bob")
    server.wait_running(victim, user="bob")
    pid = poll_until(lambda: processes_with(mark))[0].pid
    attacker = server.start(f"id -u; kill -KILL {pid} 2>&1; cat /proc/{pid}/environ 2>&1 | head -c 100; "
                            f"ls /proc/{pid}/cwd/ 2>&1")
    output = server.wait_final(attacker)["output"]
    assert int(output.split()[0]) not in (0, psutil.Process(pid).uids().real)
    if sandbox == "off":  # another user ID: the kernel refuses
        assert "not permitted" in output
        assert f"/proc/{pid}/environ: Permission denied" in output
        assert f"/proc/{pid}/cwd/': Permission denied" in output
    else:  # another PID namespace: the process is not there to be seen
        assert "No such process" in output
        assert f"/proc/{pid}/environ: No such file or directory" in output
    assert server.status(victim, user="bob")["status"] == "running"
    server.call("stop", user="bob", jobID=victim)


@pytest.mark.slow
def test_a_long_poll_wakes_as_each_job_ends(server):
    # Output and a new status arriving together once lost the event that should wake the poll.
    for _ in range(200):
        job_id = server.start("echo hello")
        started = time.monotonic()
        status = server.status(job_id, offset=2**40, wait=MAX_WAIT_SECONDS)
        if status["status"] != "finished":
            status = server.status(job_id, offset=2**40, wait=MAX_WAIT_SECONDS)
        # A lost wake-up shows as a poll that lasts its whole wait.
        assert status["status"] == "finished" and time.monotonic() - started < MAX_WAIT_SECONDS
