"""`from workerctl import Client` against a real server: every method, its settings from the environment as the
CLI takes them, and its errors."""

from __future__ import annotations

import pytest
from support import marker
from workerctl import Client, ClientError


@pytest.fixture
def client(server, monkeypatch, tmp_path) -> Client:
    monkeypatch.setenv("HOME", str(tmp_path))  # no settings file
    for name in ("WORKERCTL_CONFIG", "WORKERCTL_TOKEN", "WORKERCTL_TOKEN_FILE", "WORKERCTL_CERT", "WORKERCTL_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKERCTL_SERVER", server.url)
    monkeypatch.setenv("WORKERCTL_CA", str(server.tls.ca))
    with Client(token=server.users.tokens["alice"]) as client:
        yield client


def test_start_wait_status_and_logs(client, server):
    answer = client.start("echo one; echo two; exit 3", env={"X": "1"}, labels=["library"])
    assert answer["status"] == "created"
    ended = client.wait(answer["jobID"])
    assert (ended["status"], ended["exitCode"]) == ("finished", 3) and "output" not in ended
    status = client.status(answer["jobID"])
    assert status["output"] == "one\ntwo\n" and status["env"] == {"X": "1"}
    assert "".join(client.logs(answer["jobID"])) == "one\ntwo\n"
    assert answer["jobID"] in [job["jobID"] for job in client.list(label="library")]


def test_follow_and_stop(client):
    job_id = client.start(f"echo started; sleep {marker()}")["jobID"]
    pieces = client.logs(job_id, follow=True)
    assert next(pieces) == "started\n"
    assert client.stop(job_id)["status"] == "stopped"
    assert list(pieces) == []
    assert client.wait(job_id, timeout=0)["status"] == "stopped"


def test_a_key_makes_a_start_safe_to_repeat(client):
    key = f"library-{marker()}"
    assert client.start("true", key=key)["jobID"] == client.start("true", key=key)["jobID"]


def test_errors_are_one_sentence_with_the_clis_exit_status(client, server):
    with pytest.raises(ClientError) as missing:
        client.status("jnosuchjobnosuchjobnosuchjob")
    assert (missing.value.status, missing.value.message) == (66, "no such job")
    with Client(server.url, token="not-a-token", ca=str(server.tls.ca)) as stranger:
        with pytest.raises(ClientError) as refused:
            stranger.list()
    assert refused.value.status == 77
