"""Jobs never reach the cluster's control plane, its Redis. An agent whose jobs would share the host's network
(`--network host`, or no sandbox) refuses to start, with status 78, unless Redis keeps out clients that give no
password: a URL without one is refused, and so is a Redis whose default user needs none. With a password it
starts, and a job of it that talks to Redis on the host's loopback is answered NOAUTH and reads nothing."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import celery_problem, start_agent
from facilities import needs
from redis_server import RedisServer
from support import Tls, Users, poll_until, reachable_by_jobs, start_server

needs("cluster", celery_problem())
pytestmark = pytest.mark.slow  # agents started and refused, each a cluster's start-up

_CHECKED = "of the cluster at"  # the agent's first line once its settings passed its checks
_URL_WARNING = "is on this agent's command line, where its jobs can read it"


@pytest.fixture(scope="module")
def open_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server that lets in clients with no password, as Redis does out of the box."""
    server = RedisServer(tmp_path_factory.mktemp("open-redis"))
    with server.client() as client:
        client.config_set("requirepass", "")
    server.password = ""  # so that url() and client() give none
    yield server
    server.stop()


def _agent_until(directory: Path, until: str, *arguments: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `workerctl agent` with these arguments and wait until it exits or logs `until`; the process (still
    running in the second case: the caller ends it) and its log."""
    log_path = directory / f"agent-{secrets.token_hex(4)}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workerctl", "agent", "--name", "checked", "--data-dir",
             str(reachable_by_jobs(directory) / "data"), "--log-level", "INFO", *arguments],
            stdout=log, stderr=log, start_new_session=True)
    try:
        poll_until(lambda: process.poll() is not None or until in log_path.read_text(errors="replace"), 30,
                   message=f"the agent to exit or log {until!r}")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, log_path


def _run_agent(directory: Path, *arguments: str) -> tuple[int, str]:
    """Start `workerctl agent` with these arguments, and wait for it to exit (its status and output); fails the
    test if the agent got past its checks instead."""
    process, log_path = _agent_until(directory, _CHECKED, *arguments)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        pytest.fail(f"the agent started:\n{log_path.read_text(errors='replace')}")
    return process.returncode, log_path.read_text(errors="replace")


def _refusal(output: str) -> str:
    """The one sentence an agent that will not start ends with."""
    last = output.strip().splitlines()[-1]
    assert last.startswith("workerctl: ") and "Traceback" not in output, output
    return last


@pytest.mark.parametrize("shared", [("--network", "host"), ("--sandbox", "off")], ids=lambda flags: flags[1])
def test_an_agent_whose_jobs_share_the_hosts_network_refuses_a_url_without_a_password(
        open_redis: RedisServer, tmp_path: Path, shared: tuple[str, str]) -> None:
    url = open_redis.url(prefix=f"open-{secrets.token_hex(6)}")
    status, output = _run_agent(tmp_path, "--cluster", url, *shared)
    refusal = _refusal(output)
    assert status == 78, output
    assert f"jobs could reach the cluster's Redis, as they share the host's network ({' '.join(shared)})" in refusal, \
        refusal
    assert "its URL has no password" in refusal and "give Redis a password" in refusal, refusal


def test_an_agent_not_run_as_root_gives_its_jobs_no_sandbox_so_it_refuses_a_url_without_a_password(
        open_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only root can give jobs a sandbox: an agent run as another user shares its network with them even with
    --network none, the default. (Its checks run here, in the test's process, as if it were not root.)"""
    from workerctl.server import agent
    from workerctl.server.serve import ServeError
    from workerctl.runtime.settings import ServerSettings

    def past_the_checks(settings: ServerSettings) -> None:
        pytest.fail("the agent's Redis checks let it through")

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(agent, "prepare_host", past_the_checks)
    url = open_redis.url(prefix=f"open-{secrets.token_hex(6)}")
    settings = ServerSettings(cluster=url, name="checked", data_dir=tmp_path / "data")
    refusal = re.escape("share the host's network (no sandbox here, as the agent does not run as root), and its URL "
                        "has no password")
    with pytest.raises(ServeError, match=refusal):
        agent.check_agent_settings(settings)


def test_an_agent_whose_jobs_share_the_hosts_network_refuses_a_redis_open_to_clients_without_a_password(
        open_redis: RedisServer, tmp_path: Path) -> None:
    """The agent's URL names an ACL user with a password, but Redis's default user still needs none: a job
    would log in as that one."""
    user, password, prefix = f"agent-{secrets.token_hex(4)}", secrets.token_hex(16), f"acl-{secrets.token_hex(6)}"
    with open_redis.client() as client:
        client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
                           commands=["+@all"])
    url = open_redis.url(prefix=prefix, user=user, password=password)
    status, output = _run_agent(tmp_path, "--cluster", url, "--network", "host")
    refusal = _refusal(output)
    assert status == 78, output
    assert "lets in clients that give no password" in refusal and "requirepass" in refusal, refusal


def test_the_password_on_the_command_line_is_warned_of_where_jobs_see_the_hosts_processes(tmp_path: Path) -> None:
    """The warning comes before the agent reaches Redis: here it never does, and waits for it."""
    password = secrets.token_hex(16)
    url = f"redis://:{password}@127.0.0.1:1/0"  # nothing listens on port 1
    settings = tmp_path / "agent.toml"
    settings.write_text(f'cluster = "{url}"\n')
    settings.chmod(0o600)
    for arguments, warned in ((("--cluster", url), True), (("--config", str(settings)), False)):
        process, log_path = _agent_until(tmp_path, "waiting until it can be", "--sandbox", "off", *arguments)
        process.kill()
        process.wait()
        output = log_path.read_text()
        assert "waiting until it can be" in output and (_URL_WARNING in output) == warned, output
        assert password not in output, output


def test_with_a_password_the_agent_starts_and_its_jobs_cannot_use_redis(
        redis_server: RedisServer, tmp_path: Path, tls: Tls, users: Users) -> None:
    """A job on the host's network reaches Redis on its loopback, and is answered NOAUTH. (Whether the job has a
    sandbox changes nothing here; an agent with --sandbox off and a password passes its checks in the test of the
    warning above.)"""
    url = redis_server.url(prefix=f"guarded-{secrets.token_hex(6)}")
    agent = start_agent(tmp_path, url, "guarded", "--network", "host")
    try:
        front_end = start_server(tmp_path / "front", tls, users, "--cluster", url)
        try:
            # What a job would try: Redis's port on the loopback, without the password.
            probe = (f"python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", {redis_server.port}));"
                     f" s.sendall(b\"KEYS *\\r\\n\"); print(s.makefile(\"rb\").readline())'")
            job = front_end.wait_final(front_end.start(probe))
            assert job["host"] == "guarded" and job["exitCode"] == 0, job
            assert "-NOAUTH" in job["output"], job
        finally:
            front_end.stop()
    finally:
        agent.stop()
