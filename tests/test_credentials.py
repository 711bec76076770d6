"""Who a caller is, beyond a plain token: client certificates (mutual TLS) naming users, tokens rotated and
tokens that expire, each tried with a real server and the real `workerctl` command."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import Users, start_server
from workerctl.store.users import add_user, load_users


def workerctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workerctl", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **(env or {})})


@pytest.fixture(scope="module")
def client_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA minted by `workerctl certs`, with client certificates for alice and for mallory, who is not a user."""
    directory = tmp_path_factory.mktemp("client-ca")
    assert workerctl("certs", "--out", str(directory)).returncode == 0
    for name in ("alice", "mallory"):
        minted = workerctl("certs", "--out", str(directory), "--client", name)
        assert minted.returncode == 0, minted.stderr
    return directory


@pytest.fixture
def own_users(tmp_path: Path) -> Users:
    """A users file of this test's own, which it may change."""
    file = tmp_path / "users.toml"
    return Users(file, {name: add_user(file, name) for name in ("alice", "bob")})


def as_cli(server, client_ca: Path, name: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {"WORKERCTL_SERVER": server.url, "WORKERCTL_CA": str(server.tls.ca)}
    if token is not None:
        env["WORKERCTL_TOKEN"] = token
    return workerctl(*args, "--cert", str(client_ca / f"client-{name}.pem"),
                     "--key", str(client_ca / f"client-{name}-key.pem"), env=env)


def request_with(server, context: ssl.SSLContext, body: dict) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
    try:
        connection.request("POST", "/", body=json.dumps(body).encode())
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_client_certificate_naming_a_user_stands_in_for_the_token(server_factory, client_ca):
    server = server_factory("--client-ca", str(client_ca / "ca.pem"))
    started = as_cli(server, client_ca, "alice", "start", "echo hi")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[1]  # jobID: ID
    assert server.status(job_id, "alice")["jobID"] == job_id  # the job is alice's, as her token sees it
    assert server.call("status", "bob", jobID=job_id).status == 404

    unknown = as_cli(server, client_ca, "mallory", "list")
    assert unknown.returncode == 77 and "'mallory', who is not a user here" in unknown.stderr
    mismatched = as_cli(server, client_ca, "alice", "list", token=server.users.tokens["bob"])
    assert mismatched.returncode == 77 and "not for the user the client certificate names" in mismatched.stderr
    assert server.call("list", "bob").status == 200  # a token alone still works where certificates are optional


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(server_factory, client_ca, tmp_path):
    server = server_factory("--client-ca", str(client_ca / "ca.pem"))
    assert workerctl("certs", "--out", str(tmp_path)).returncode == 0
    assert workerctl("certs", "--out", str(tmp_path), "--client", "alice").returncode == 0
    context = server.tls.client_context()
    context.load_cert_chain(tmp_path / "client-alice.pem", tmp_path / "client-alice-key.pem")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        request_with(server, context, {"action": "list"})
    assert server.call("list").status == 200


def test_required_client_certificates_refuse_connections_without_one(server_factory, client_ca):
    server = server_factory("--client-ca", str(client_ca / "ca.pem"), "--require-client-cert")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        request_with(server, server.tls.client_context(), {"action": "list", "token": server.users.tokens["alice"]})
    context = server.tls.client_context()
    context.load_cert_chain(client_ca / "client-alice.pem", client_ca / "client-alice-key.pem")
    assert request_with(server, context, {"action": "list"}) == (200, {"jobs": []})


@pytest.mark.slow
def test_removing_the_user_stops_their_certificate_at_once(client_ca, tls, own_users, tmp_path):
    server = start_server(tmp_path, tls, own_users, "--client-ca", str(client_ca / "ca.pem"))
    try:
        assert as_cli(server, client_ca, "alice", "list").returncode == 0
        assert workerctl("users", "remove", "alice", "--users", str(own_users.file)).returncode == 0
        assert as_cli(server, client_ca, "alice", "list").returncode == 77
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_rotated_token_replaces_the_old_one_at_once(tls, own_users, tmp_path):
    server = start_server(tmp_path, tls, own_users)
    try:
        old = own_users.tokens["alice"]
        rotated = workerctl("users", "rotate", "alice", "--users", str(own_users.file))
        assert rotated.returncode == 0 and "the old one no longer works" in rotated.stderr
        new = rotated.stdout.strip()
        assert new != old and new not in own_users.file.read_text()
        own_users.tokens["alice"] = old
        assert server.call("list").status == 401
        own_users.tokens["alice"] = new
        assert server.call("list").status == 200
        assert server.call("list", "bob").status == 200  # the others' tokens are untouched
        assert workerctl("users", "rotate", "nobody", "--users", str(own_users.file)).returncode == 65
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_an_expired_token_is_refused_saying_so(tls, own_users, tmp_path):
    now = datetime.now(timezone.utc)
    own_users.tokens["carol"] = add_user(own_users.file, "carol", expires=now - timedelta(seconds=1))
    own_users.tokens["dave"] = add_user(own_users.file, "dave", expires=now + timedelta(days=1))
    server = start_server(tmp_path, tls, own_users)
    try:
        refused = server.call("list", "carol")
        assert refused.status == 401 and "expired" in refused.body["error"]
        assert server.call("list", "dave").status == 200

        added = workerctl("users", "add", "erin", "--expires", "90d", "--users", str(own_users.file))
        assert added.returncode == 0, added.stderr
        expires = load_users(own_users.file)["erin"].expires
        assert timedelta(days=89) < expires - now < timedelta(days=91)
        own_users.tokens["erin"] = added.stdout.strip()
        assert server.call("list", "erin").status == 200
        listed = workerctl("users", "list", "--users", str(own_users.file)).stdout.splitlines()
        assert "alice" in listed and any(line.startswith("carol\texpired ") for line in listed)

        renewed = workerctl("users", "rotate", "carol", "--expires", "12h", "--users", str(own_users.file))
        own_users.tokens["carol"] = renewed.stdout.strip()
        assert server.call("list", "carol").status == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("duration", ["3y", "0d", "5x", "12", "1.5h", "d"])
def test_a_duration_that_is_not_one_is_a_usage_error(tmp_path, duration):
    result = workerctl("users", "add", "frank", "--expires", duration, "--users", str(tmp_path / "users.toml"))
    assert result.returncode == 64 and "--expires must be a whole number" in result.stderr
    assert not (tmp_path / "users.toml").exists()


def test_certs_renew_replaces_only_the_servers_pair(tmp_path: Path) -> None:
    assert workerctl("certs", "--out", str(tmp_path), "--hosts", "127.0.0.1").returncode == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("ca.pem", "ca-key.pem", "server.pem")}
    renewed = workerctl("certs", "renew", "--out", str(tmp_path))
    assert renewed.returncode == 0 and "clients keep their ca.pem" in renewed.stdout, renewed.stderr
    assert (tmp_path / "ca.pem").read_bytes() == before["ca.pem"]
    assert (tmp_path / "ca-key.pem").read_bytes() == before["ca-key.pem"]
    assert (tmp_path / "server.pem").read_bytes() != before["server.pem"]
    missing = workerctl("certs", "renew", "--out", str(tmp_path / "elsewhere"))
    assert missing.returncode == 64 and "has no ca-key.pem" in missing.stderr and len(missing.stderr.splitlines()) == 1
