"""The sandbox: with it on, a job sees and touches only its own world (processes, /tmp, IPC, host name, network),
the rest of the system read-only and without the server's secrets; with it off, the host's, as documented."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest
from support import Tls, Users, assert_none_left, marker, poll_until, processes_with, require_namespaces, start_server
from workerctl.supervisor.sandbox import HELPER, SYSTEM_PATHS


@pytest.fixture(scope="module")
def server_flags():
    require_namespaces()
    return "--sandbox", "on", "--network", "none"


def output_of(server, command, user="alice"):
    return server.wait_final(server.start(command, user=user), user)["output"]


def test_a_job_sees_only_its_own_processes(server):
    other = server.start(f"sleep {marker()}", user="bob")
    pids = output_of(server, "ps -e -o pid= | tr -d ' '").split()
    # Its init (1), its shell (2) and ps itself: nothing of the host, the server or bob's job.
    assert sorted(map(int, pids))[:2] == [1, 2] and len(pids) <= 4
    server.call("stop", user="bob", jobID=other)


def test_tmp_is_private_and_vanishes_with_the_job(server):
    assert output_of(server, "ls -A /tmp /var/tmp /dev/shm; echo left > /tmp/mark; echo shm > /dev/shm/mark; "
                             "echo done") == "/dev/shm:\n\n/tmp:\n\n/var/tmp:\ndone\n"
    assert output_of(server, "ls -A /tmp /dev/shm | grep -c mark", user="bob").strip() == "0"
    assert output_of(server, "cat /tmp/mark 2>&1").startswith("cat: /tmp/mark: No such file")


def test_ipc_objects_vanish_with_the_job(server):
    assert "Shared memory id" in output_of(server, "ipcmk -M 4096; ipcs -m | grep -c ^0x")
    assert output_of(server, "ipcs -m | grep -c ^0x").strip() == "0"


@pytest.fixture
def in_a_system_path(tls, users):
    """A copy of the tests' certificate, key and users file, readable by all, in a new directory under /opt (a
    system path jobs see, as /etc is), where a server's data directory can go too; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="wc-sandbox-test-", dir="/opt"))
    try:
        directory.chmod(0o755)
        copies = Tls(tls.ca, directory / "server.pem", directory / "server-key.pem")
        for original, copy in ((tls.cert, copies.cert), (tls.key, copies.key), (users.file, directory / "users.toml")):
            shutil.copyfile(original, copy)
            copy.chmod(0o644)
        yield directory, copies, Users(directory / "users.toml", users.tokens)
    finally:
        shutil.rmtree(directory)


@pytest.mark.slow
def test_the_data_directory_key_and_users_file_are_out_of_sight(in_a_system_path, tmp_path):
    """Where a path jobs see holds them, the data directory shows empty and the key and users file read empty
    (covered), though the files are readable by all and the certificate beside them reads whole."""
    require_namespaces()
    directory, tls, users = in_a_system_path
    server = start_server(tmp_path, tls, users, "--sandbox", "on", data_dir=directory / "data")
    try:
        output = output_of(server, f"ls -A {server.data_dir}; wc -c < {tls.key}; wc -c < {users.file}; "
                                   f"head -n 1 {tls.cert}")
    finally:
        server.stop()
    assert output == "0\n0\n-----BEGIN CERTIFICATE-----\n"


def test_the_rest_of_the_system_is_read_only(server):
    output = output_of(server, "touch /etc/workerctl-test /usr/workerctl-test /workerctl-test 2>&1; "
                               "echo home > \"$HOME/file\" && cat \"$HOME/file\"")
    assert output.count("Read-only file system") == 3 and output.endswith("home\n")


def test_with_network_none_a_job_has_only_a_loopback_and_cannot_reach_the_server(server):
    output = output_of(server, f"grep -c : /proc/net/dev; python3 -c 'import socket; "
                               f"socket.create_connection((\"127.0.0.1\", {server.port}), timeout=5)' 2>&1 | tail -1")
    lines = output.splitlines()
    assert lines[0] == "1" and "Connection refused" in lines[1]


# Listens on {port}, and leaves a connection of its own in TIME_WAIT (closed first by its client side), which the
# kernel keeps for a minute after the job has ended.
_LISTEN = ("python3 -c 'import socket, time; s = socket.socket(); s.bind((\"127.0.0.1\", {port})); s.listen(); "
           "c = socket.create_connection((\"127.0.0.1\", {port})); a = s.accept()[0]; c.close(); "
           "print(\"listening\", flush=True); time.sleep({seconds})'")


def _sockets_on(server, port, user):
    """The lines of a job's /proc/net/tcp that name `port` (local or remote): what its network namespace holds."""
    table = output_of(server, "cat /proc/net/tcp", user=user)
    return [line for line in table.splitlines()[1:] if f":{port:04X} " in line]


def test_jobs_never_share_a_network_namespace_at_once_nor_across_users(server):
    """Namespaces are made ahead of jobs and a user's ended job's is kept for their next; two jobs at once, or
    jobs of two users, must still never meet on a loopback."""
    port = 20000 + int(marker().split(".")[1]) % 20000
    listening = server.start(_LISTEN.format(port=port, seconds=60))
    poll_until(lambda: "listening" in server.status(listening)["output"], message="the listener")
    assert _sockets_on(server, port, "alice") == []  # alice's second job, while her first runs
    assert _sockets_on(server, port, "bob") == []
    server.call("stop", jobID=listening)
    server.wait_final(listening)
    for _ in range(3):  # bob's next jobs, after alice's ended, whose connections linger in TIME_WAIT there
        assert _sockets_on(server, port, "bob") == []


def test_a_job_has_a_host_name_of_its_own(server):
    assert output_of(server, "hostname") == "workerctl-job\n"


@pytest.mark.parametrize("command, exit_code, signal", [("exit 3", 3, None), ("kill -TERM $$", None, "SIGTERM"),
                                                         ("kill -USR1 $$", None, "SIGUSR1"), ("true", 0, None)])
def test_a_job_ends_exactly_as_its_command_did(server, command, exit_code, signal):
    status = server.wait_final(server.start(command))
    assert (status["status"], status["exitCode"], status["signal"]) == ("finished", exit_code, signal)


def test_with_network_host_a_job_reaches_the_host(server_factory):
    server = server_factory("--sandbox", "on", "--network", "host")
    output = output_of(server, f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {server.port}), "
                               f"timeout=5); print(\"reached\")' 2>&1")
    assert output == "reached\n"


def test_with_the_sandbox_off_a_job_sees_the_host(server_factory):
    server = server_factory("--sandbox", "off")
    assert int(output_of(server, "ps -e -o pid= | wc -l")) > 10


def _init_forked_or_ended(helper: subprocess.Popen[bytes]) -> bool:
    """Whether the helper has forked the namespace's init, or has ended (not reaped: its group stays its own)."""
    with open(f"/proc/{helper.pid}/task/{helper.pid}/children") as children:
        if children.read():
            return True
    return os.waitid(os.P_PID, helper.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


@pytest.mark.slow
def test_one_sigterm_to_the_group_ends_a_job_whose_init_is_just_starting_it():
    """The supervisor ends a job with one SIGTERM to its process group. Sent while the namespace's init is still
    starting the command, it must not be lost: an init drops signals it has no handler for, and the kernel
    passes a group's signal to a child being forked only if the parent takes it."""
    require_namespaces()
    for _ in range(30):  # most rounds signal before init forks the command or while it does
        mark = marker()
        system = [option for path in SYSTEM_PATHS for option in ("-R", path)]
        helper = subprocess.Popen([str(HELPER), "-n", *system, "-u", "65534", "-g", "65534", "--", "/bin/sh", "-c",
                                   f"sleep {mark}"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            while not _init_forked_or_ended(helper):
                pass
            os.killpg(helper.pid, signal.SIGTERM)
            assert helper.wait(timeout=30) == -signal.SIGTERM
            assert_none_left(mark)  # the helper outlives its init, whose exit ends the namespace
        finally:
            if helper.returncode is None:
                os.killpg(helper.pid, signal.SIGKILL)
                helper.wait()
            for left in processes_with(mark):  # where it failed
                with contextlib.suppress(psutil.NoSuchProcess):
                    left.kill()
