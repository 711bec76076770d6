"""The `workerctl` command as a user runs it: the design's output format, JSON, exit statuses, settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import trustme
from support import Tls, connected_to, marker, poll_until, start_server
from workerctl.protocol.jobs import is_job_id


@pytest.fixture
def cli(server, tmp_path):
    """Run workerctl with the test server's settings in the environment; returns (exit status, stdout, stderr)."""
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PAGER": "cat",
                "WORKERCTL_SERVER": server.url, "WORKERCTL_TOKEN": server.users.tokens["alice"],
                "WORKERCTL_CA": str(server.tls.ca)}

    def run(*args, env=None, replace_env=False, timeout=60):
        result = subprocess.run([sys.executable, "-m", "workerctl", *args], capture_output=True, text=True,
                                env=env if replace_env else {**base_env, **(env or {})}, timeout=timeout)
        return result.returncode, result.stdout, result.stderr

    return run


def one_line(stderr):
    assert stderr.count("\n") == 1 and stderr.startswith("workerctl: "), stderr
    return stderr


def test_start_prints_the_job_id_and_created(cli):
    code, out, err = cli("start", "ls -l")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1] == "status: created"
    assert lines[0].startswith("jobID: ") and is_job_id(lines[0].removeprefix("jobID: "))


def test_status_prints_the_designs_format_with_how_the_job_ended(cli, server):
    job_id = server.start("echo one; echo two >&2")
    server.wait_final(job_id)
    code, out, _ = cli("status", job_id)
    assert code == 0
    assert out == f"jobID: {job_id}\nstatus: finished\nexitCode: 0\noutput:\none\ntwo\n"
    running = server.start(f"sleep {marker()}")
    server.wait_running(running)
    assert cli("status", running)[1] == f"jobID: {running}\nstatus: running\noutput:\n"
    server.call("stop", jobID=running)
    assert cli("status", running)[1] == f"jobID: {running}\nstatus: stopped\nsignal: SIGTERM\noutput:\n"


def test_stop_prints_stopped(cli, server):
    job_id = server.start(f"sleep {marker()}")
    server.wait_running(job_id)
    assert cli("stop", job_id) == (0, f"jobID: {job_id}\nstatus: stopped\n", "")


def test_json_prints_the_api_answer(cli, server):
    job_id = server.start("echo hi")
    server.wait_final(job_id)
    code, out, _ = cli("status", job_id, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["output"] == "hi\n" and answer["exitCode"] == 0


@pytest.mark.parametrize("job_id", ["123", "1e5", "True", "None", "[1,2]", "0x10", "-5"])
def test_job_ids_pass_through_verbatim(cli, job_id):
    code, _, err = cli("status", job_id)
    assert code == 66 and one_line(err) == "workerctl: no such job\n"


@pytest.mark.parametrize("command, output", [("123", "127"), ("echo 1e5", "1e5\n"), ("echo [1,2]", "[1,2]\n")])
def test_commands_pass_through_verbatim(cli, server, command, output):
    code, out, _ = cli("start", command)
    job_id = out.split()[1]
    status = server.wait_final(job_id)
    assert status["command"] == command
    assert status["output"] == output or str(status["exitCode"]) == output


def test_a_command_with_dashes_is_one_quoted_argument(cli, server):
    code, out, _ = cli("start", "ls -l /")
    assert code == 0
    assert "bin" in server.wait_final(out.split()[1])["output"]


@pytest.mark.parametrize("args, status", [
    (("frobnicate",), 64),
    (("status",), 64),
    (("status", "a", "b"), 64),
    (("start", "true", "--bogus"), 64),
    (("list", "--status", "bogus"), 64),
])
def test_usage_errors_are_one_line_and_64(cli, args, status):
    code, out, err = cli(*args)
    assert code == status
    one_line(err)


def test_help_works_without_a_terminal(cli):
    code, out, err = cli("--help")
    assert code == 0 and "start" in out and "status" in out and "stop" in out
    code, out, err = cli("status", "--help")
    assert code == 0 and "JOB_ID" in out and "FIRE_METADATA" not in out


def test_wrong_token_exits_77(cli):
    code, _, err = cli("list", "--token", "wrong")
    assert code == 77 and "invalid token" in one_line(err)


def test_unreachable_server_exits_69(cli):
    code, _, err = cli("list", "--server", "https://127.0.0.1:1", "--retry", "0")
    assert code == 69 and "cannot reach" in one_line(err)


def test_a_request_safe_to_repeat_is_retried_for_retry_seconds(cli):
    began = time.monotonic()
    code, _, err = cli("status", "jaaaaaaaaaaaaaaaaaaaaaaaaaa", "--server", "https://127.0.0.1:1", "--retry", "1")
    assert code == 69 and "cannot reach" in one_line(err)
    assert time.monotonic() - began >= 0.5  # it asked again, for about --retry seconds
    began = time.monotonic()
    assert cli("start", "true", "--server", "https://127.0.0.1:1", "--retry", "30")[0] == 69  # no --key: once
    assert time.monotonic() - began < 30


def test_a_certificate_from_another_ca_exits_69(cli, tmp_path):
    import trustme
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    code, _, err = cli("list", "--ca", str(other_ca))
    assert code == 69 and "certificate" in one_line(err)


@pytest.mark.slow
def test_a_wrong_host_name_is_refused(cli, tmp_path, users):
    ca = trustme.CA()
    issued = ca.issue_cert("example.test")  # not the address the client asks for
    tls = Tls(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(tls.ca))
    issued.cert_chain_pems[0].write_to_path(str(tls.cert))
    issued.private_key_pem.write_to_path(str(tls.key))
    other = start_server(tmp_path, tls, users)
    try:
        code, _, err = cli("list", "--server", other.url, "--ca", str(tls.ca))
        assert code == 69 and "certificate" in one_line(err)
    finally:
        other.stop()


def test_an_invalid_request_exits_65(cli):
    code, _, err = cli("start", "echo \x01ok", "--key", "k" * 300)
    assert code == 65 and "idempotencyKey" in one_line(err)


def test_server_unavailable_exits_69(cli, server_factory, tmp_path):
    other = server_factory()
    os.kill(other.child_pid("supervisor"), 9)
    code, _, err = cli("list", "--server", other.url)
    assert code in (69, 0)  # the supervisor may already be back; when it is not, 503 means 69
    if code:
        assert "supervisor" in one_line(err)


def test_wait_exits_with_the_jobs_outcome(cli, server):
    assert cli("wait", server.start("exit 0"))[0] == 0
    assert cli("wait", server.start("exit 9"))[0] == 1
    stopped = server.start(f"sleep {marker()}")
    server.wait_running(stopped)
    server.call("stop", jobID=stopped)
    assert cli("wait", stopped)[0] == 2
    assert cli("wait", server.start(f"sleep {marker()}"), "--timeout", "0.2")[0] == 4


def test_wait_prints_how_the_job_ended(cli, server):
    job_id = server.start("exit 9")
    code, out, _ = cli("wait", job_id)
    assert out == f"jobID: {job_id}\nstatus: finished\nexitCode: 9\n"


def test_logs_prints_the_output_and_follow_exits_with_the_outcome(cli, server):
    job_id = server.start("for i in 1 2 3; do echo line$i; sleep 0.1; done; exit 1")
    code, out, _ = cli("logs", "-f", job_id)
    assert (code, out) == (1, "line1\nline2\nline3\n")
    assert cli("logs", job_id) == (0, "line1\nline2\nline3\n", "")


def test_list_prints_a_table(cli, server):
    job_id = server.start("echo listed")
    server.wait_final(job_id)
    code, out, _ = cli("list", "--status", "finished")
    assert code == 0 and out.splitlines()[0].split() == ["JOB", "ID", "STATUS", "EXIT", "CREATED", "LABELS",
                                                         "COMMAND"]
    assert job_id in out


def started(out: str) -> str:
    """The job ID start printed."""
    assert out.startswith("jobID: "), out
    return out.split()[1]


def test_start_with_variables_and_labels_then_find_it_by_label_and_restart_it(cli, server):
    label = f"nightly-{marker()}"
    code, out, err = cli("start", 'echo "$GREETING $TARGET"', "--env", "GREETING=hello", "--env=TARGET=a=b",
                         "--label", label, "--label", "db", "--timeout", "20")
    assert code == 0, err
    first = started(out)
    assert server.wait_final(first)["output"] == "hello a=b\n"
    assert "labels: " + label + ", db" in cli("status", first)[1]
    listed = cli("list", "--label", label)[1].splitlines()
    assert len(listed) == 2 and first in listed[1] and f"{label},db" in listed[1]

    code, out, _ = cli("restart", first)
    again = started(out)
    assert code == 0 and again != first
    rerun = server.wait_final(again)
    assert (rerun["command"], rerun["output"], rerun["env"], rerun["labels"]) == (
        'echo "$GREETING $TARGET"', "hello a=b\n", {"GREETING": "hello", "TARGET": "a=b"}, [label, "db"])
    assert rerun["limits"]["timeoutSeconds"] == 20
    assert [job["jobID"] for job in json.loads(cli("list", "--label", label, "--json")[1])["jobs"]] == [again, first]


@pytest.mark.parametrize("args, says", [
    (["--env", "GREETING"], "--env takes NAME=VALUE"),
    (["--env", "WORKERCTL_JOB_ID=x"], "names starting WORKERCTL_ are the server's"),
    (["--env"], "--env needs a value"),
])
def test_bad_variables_are_refused_in_one_line(cli, args, says):
    code, out, err = cli("start", "true", *args)
    assert code in (64, 65) and says in err and len(err.splitlines()) == 1 and out == "", err


def test_words_after_a_double_dash_are_the_command_quoted_for_the_shell(cli, server):
    code, out, err = cli("start", "--label", "words", "--", "printf", "%s|", "a b", "-h", "$HOME", "--debug")
    assert code == 0, err
    assert server.wait_final(started(out))["output"] == "a b|-h|$HOME|--debug|"
    code, _, err = cli("start", "true", "--", "ls")
    assert code == 64 and "either quoted or after --" in err
    assert cli("status", "--", "x")[0] == 64


def test_logs_tail_prints_the_last_lines(cli, server):
    job_id = server.start("seq 1 100")
    server.wait_final(job_id)
    assert cli("logs", job_id, "--tail", "3") == (0, "98\n99\n100\n", "")
    assert cli("logs", job_id, "--tail", "0") == (0, "", "")
    assert cli("logs", job_id, "--tail", "500")[1] == "".join(f"{n}\n" for n in range(1, 101))
    assert cli("logs", "-f", job_id, "--tail", "1") == (0, "100\n", "")


def test_wait_json_shows_no_internal_values(cli, server):
    job_id = server.start("exit 3")
    code, out, _ = cli("wait", job_id, "--json")
    answer = json.loads(out)
    assert code == 1 and answer["exitCode"] == 3
    assert "nextOffset" not in answer and "output" not in answer


def test_idempotency_key_from_the_cli(cli):
    first = cli("start", "true", "--key", "cron-0300")[1]
    assert cli("start", "true", "--key", "cron-0300")[1].split()[1] == first.split()[1]


def test_settings_file_and_token_file_with_a_bare_environment(cli, server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(server.users.tokens["bob"] + "\n")
    config_dir = tmp_path / ".config" / "workerctl"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(
        f'server = "{server.url}"\ntoken_file = "{token_file}"\nca = "{server.tls.ca}"\n')
    code, out, err = cli("start", "echo from cron", env={"HOME": str(tmp_path)}, replace_env=True)
    assert code == 0, err
    job_id = out.split()[1]
    assert server.wait_final(job_id, user="bob")["output"] == "from cron\n"


def test_flags_beat_environment_beat_settings_file(cli, server, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('server = "https://127.0.0.1:1"\n')
    env = {"WORKERCTL_CONFIG": str(config), "WORKERCTL_SERVER": ""}
    assert cli("list", "--retry", "0", env=env)[0] == 69  # the file's server
    assert cli("list", env={**env, "WORKERCTL_SERVER": server.url})[0] == 0  # the environment beats the file
    assert cli("list", "--server", "https://127.0.0.1:1", "--retry", "0",
               env={**env, "WORKERCTL_SERVER": server.url})[0] == 69
    code, _, err = cli("list", "--token", "wrong", env={"WORKERCTL_TOKEN": server.users.tokens["alice"]})
    assert code == 77


@pytest.mark.parametrize("content, contains", [('server = "http://plain"', "https://"),
                                               ("colour = 'red'", "unknown settings"),
                                               ("not toml [", "not valid TOML")])
def test_bad_settings_files_are_one_line(cli, tmp_path, content, contains):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code, _, err = cli("list", "--config", str(config), env={"WORKERCTL_SERVER": ""})
    assert code in (64, 78) and contains in one_line(err)


def test_a_missing_token_file_exits_78(cli, tmp_path):
    code, _, err = cli("list", "--token-file", str(tmp_path / "missing"), env={"WORKERCTL_TOKEN": ""})
    assert code == 78 and "token file" in one_line(err)


def test_users_add_prints_a_token_that_works(cli, server, tmp_path):
    users_file = tmp_path / "users.toml"
    code, out, err = cli("users", "add", "carol", "--users", str(users_file))
    assert code == 0 and "shown only this once" in err
    token = out.strip()
    assert token not in users_file.read_text()
    assert cli("users", "list", "--users", str(users_file)) == (0, "carol\n", "")
    assert cli("users", "add", "carol", "--users", str(users_file))[0] == 65  # there already


def test_cron_style_poll_finds_the_job_finished(cli, server):
    job_id = cli("start", "echo nightly")[1].split()[1]
    poll_until(lambda: cli("wait", job_id, "--timeout", "0")[0] == 0, timeout=10)


def test_wait_and_follow_exit_3_when_the_time_limit_ends_the_job(cli, server_factory):
    other = server_factory("--job-timeout", "0.5")
    job_id = other.start(f"echo partial; sleep {marker()}")
    code, out, _ = cli("wait", job_id, "--server", other.url)
    assert code == 3 and "reason: time limit of 0.5 s exceeded" in out
    assert cli("logs", "-f", job_id, "--server", other.url) == (3, "partial\n", "")


def test_followers_and_waiters_learn_how_their_jobs_ended_when_the_server_shuts_down(server_factory, tmp_path):
    other = server_factory()
    job_id = other.start(f"echo started; sleep {marker()}")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WORKERCTL_SERVER": other.url,
           "WORKERCTL_TOKEN": other.users.tokens["alice"], "WORKERCTL_CA": str(other.tls.ca)}
    follower, waiter = (subprocess.Popen([sys.executable, "-m", "workerctl", *args, job_id], env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                        for args in (["logs", "-f"], ["wait"]))
    assert follower.stdout.readline() == "started\n"  # the follower's next request is its long poll
    poll_until(lambda: connected_to(waiter.pid, other.port), message="the waiter to connect")
    assert other.stop() == 0
    assert follower.communicate(timeout=10) == ("", "") and follower.returncode == 3
    out, _ = waiter.communicate(timeout=10)
    assert waiter.returncode == 3 and "reason: server shut down" in out
