"""The front door as an attacker and a careless client try it, with raw sockets: resources freed whatever the
client does, every refusal answered in JSON, and no address able to take the slots others need."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from support import marker, poll_until

MIB = 1024 * 1024


def tls_socket(server) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return server.tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def exchange(server, data: bytes) -> tuple[int, dict]:
    """Send `data` on a new connection; the status and JSON body of the answer."""
    with tls_socket(server) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def truncated_request(server) -> None:
    with tls_socket(server) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + b"x" * 60000)


@pytest.mark.slow
def test_truncated_requests_leave_nothing_behind(server):
    web = psutil.Process(server.child_pid("web"))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: truncated_request(server), range(200)))  # warm up allocators
    before = web.memory_info().rss
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: truncated_request(server), range(3000)))
    # Wait until the front end has closed them all (it learns of each close a moment after the client's).
    poll_until(lambda: len([c for c in web.net_connections("tcp") if c.status == "ESTABLISHED"]) <= 2,
               message="the truncated connections to close")
    assert web.memory_info().rss - before < 20 * MIB


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"".join(b"8000\r\n" + b"x" * 0x8000 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"zz\r\nxx\r\n", 400),
    (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
])
def test_every_refusal_is_json(server, request_bytes, status):
    answer_status, body = exchange(server, request_bytes)
    assert answer_status == status and set(body) == {"error"} and body["error"]


def test_one_address_cannot_take_the_slots_others_need(server_factory):
    server = server_factory("--max-connections-per-client", "20")
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]  # twice its share
    try:
        held[-1].settimeout(30)
        assert held[-1].recv(1) == b""  # past the share: closed at once
        other = socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0), timeout=30)
        with server.tls.client_context().wrap_socket(other, server_hostname="127.0.0.1") as connection:
            connection.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            assert connection.recv(12) == b"HTTP/1.1 401"  # served (no token), not refused
    finally:
        for sock in held:
            sock.close()


def test_a_handshake_that_never_finishes_is_dropped(server_factory):
    server = server_factory("--handshake-timeout", "0.5")
    silent = socket.create_connection(("127.0.0.1", server.port))
    silent.settimeout(30)
    assert silent.recv(1) == b""  # closed by the server, not by this timeout
    silent.close()


@pytest.mark.parametrize("attempt", range(3))
def test_a_start_right_after_the_port_accepts_is_answered_200(server_factory, attempt):
    server = server_factory(ready=False)
    port = poll_until(lambda: (lambda found: int(found.group(1)) if found else None)(
        re.search(r"listening on https://127\.0\.0\.1:(\d+)", server.log())), message="the port to be bound")
    server.port = port
    answer = server.call("start", command="true")  # the connection waits in the backlog until it can be served
    assert answer.status == 200, answer.body


def test_past_its_rate_a_user_gets_429_and_others_are_served(server_factory):
    server = server_factory("--rate-limit", "5")
    answers = [server.call("list") for _ in range(30)]  # a burst of ten, then five a second
    refused = [answer for answer in answers if answer.status == 429]
    assert refused and all(answer.status in (200, 429) for answer in answers)
    assert "requests a second" in refused[0].body["error"] and int(refused[0].headers["Retry-After"]) >= 1
    assert server.call("list", user="bob").status == 200


def test_an_address_that_goes_on_being_refused_is_answered_slowly(server_factory):
    server = server_factory()
    wrong = json.dumps({"action": "list", "token": "not-a-token"}).encode()

    def refusals_from(address: str, most: int) -> float:
        """Send a wrong token up to `most` times on one connection from `address`, until one 401 takes a second or
        more; the longest it took."""
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls.client_context(),
                                                 timeout=60, source_address=(address, 0))
        longest = 0.0
        for _ in range(most):
            began = time.monotonic()
            connection.request("POST", "/", body=wrong)
            response = connection.getresponse()
            response.read()
            assert response.status == 401
            longest = max(longest, time.monotonic() - began)
            if longest >= 1.0:
                break
        connection.close()
        return longest

    # Twenty at once are within the budget, and ten a second more; past them, a refusal is paused.
    assert refusals_from("127.0.0.1", 400) >= 1.0
    assert server.call("list").status == 200  # a good token is answered as ever
    refusals_from("127.0.0.2", 1)
    poll_until(lambda: "answering 127.0.0.1's refusals slowly" in server.log(), message="the log line")
    assert "127.0.0.2's refusals" not in server.log()


def test_the_audit_log_has_a_line_for_each_act_and_refusal(server_factory, tmp_path):
    audit = tmp_path / "audit.jsonl"
    server = server_factory("--audit-log", str(audit))
    job_id = server.start(f"sleep {marker()}")
    server.status(job_id)  # a read: no line
    server.call("stop", jobID=job_id)
    refused = server.raw(body=json.dumps({"action": "list", "token": "not-a-token"}).encode())
    assert refused.status == 401
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["user"], line["action"], line["jobID"], line["status"]) for line in lines] == [
        ("alice", "start", job_id, 200), ("alice", "stop", job_id, 200), ("-", "list", None, 401)]
    assert all(line["client"] == "127.0.0.1" and line["time"].endswith("Z") for line in lines)
    assert server.users.tokens["alice"] not in audit.read_text() and "not-a-token" not in audit.read_text()


@pytest.mark.parametrize("headers", [{"Origin": "https://elsewhere.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}])
def test_a_page_of_another_site_cannot_act_for_the_user(server, headers):
    body = json.dumps({"action": "start", "command": "true", "token": server.users.tokens["alice"]}).encode()
    refused = server.raw(body=body, headers=headers)
    assert refused.status == 403 and "another site" in refused.body["error"]


def test_the_servers_own_page_may(server):
    body = json.dumps({"action": "list", "token": server.users.tokens["alice"]}).encode()
    own = {"Origin": f"https://127.0.0.1:{server.port}", "Sec-Fetch-Site": "same-origin"}
    assert server.raw(body=body, headers=own).status == 200
