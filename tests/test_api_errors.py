"""Bad requests get the right status and one JSON sentence, never a traceback or HTML, and the server goes on."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
from workerctl.protocol.jobs import MAX_BODY_BYTES


def post(server, body, **headers):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return server.raw(body=body, headers=headers)


def assert_error(answer, status, contains=""):
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error"}, answer.body
    message = answer.body["error"]
    assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message
    assert contains in message
    assert answer.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("body, contains", [
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"start"', "must be a JSON object"),
    (b"[" * 60_000, "nested too deeply"),
    (b"\xff\xfe{", "not valid JSON"),
])
def test_bodies_that_are_not_json_objects(server, body, contains):
    assert_error(post(server, body), 400, contains)


@pytest.mark.parametrize("fields, contains", [
    ({}, 'missing field "action"'),
    ({"action": "launch"}, "unknown action"),
    ({"action": 5}, "unknown action"),
    ({"action": {"start": 1}}, "unknown action"),
    ({"action": ["start"]}, "unknown action"),
    ({"action": "start"}, "command must be a non-empty string"),
    ({"action": "start", "command": ""}, "command must be a non-empty string"),
    ({"action": "start", "command": 42}, "command must be a non-empty string"),
    ({"action": "start", "command": ["ls"]}, "command must be a non-empty string"),
    ({"action": "start", "command": "echo \u0000"}, "NUL"),
    ({"action": "start", "command": "echo \ud800"}, "valid Unicode"),
    ({"action": "start", "command": "true", "jobID": "x"}, "unknown field for start: jobID"),
    ({"action": "start", "command": "true", "idempotencyKey": 7}, "idempotencyKey"),
    ({"action": "status"}, "jobID must be a non-empty string"),
    ({"action": "status", "jobID": ""}, "jobID must be a non-empty string"),
    ({"action": "status", "jobID": 123}, "jobID must be a non-empty string"),
    ({"action": "status", "jobID": None}, "jobID must be a non-empty string"),
    ({"action": "status", "jobID": "j\u0000"}, "NUL"),
    ({"action": "status", "jobID": "x", "offset": -1}, "offset"),
    ({"action": "status", "jobID": "x", "offset": 1.5}, "offset"),
    ({"action": "status", "jobID": "x", "offset": True}, "offset"),
    ({"action": "status", "jobID": "x", "wait": 31}, "wait"),
    ({"action": "status", "jobID": "x", "wait": "5"}, "wait"),
    ({"action": "stop", "jobID": "x", "command": "ls"}, "unknown field for stop: command"),
    ({"action": "stop", "jobID": {"id": 1}}, "jobID must be a non-empty string"),
    ({"action": "list", "status": "done"}, "status must be one of"),
    ({"action": "list", "limit": 0}, "limit"),
    ({"action": "logs", "jobID": "x", "follow": "yes"}, "follow must be true or false"),
])
def test_invalid_fields(server, fields, contains):
    body = {"token": server.users.tokens["alice"], **fields}
    raw = json.dumps(body, ensure_ascii=True).encode()
    assert_error(post(server, raw), 400, contains)


def test_nan_is_refused_as_a_wait(server):
    raw = b'{"action": "status", "jobID": "x", "wait": NaN, "token": "%s"}' % server.users.tokens["alice"].encode()
    assert_error(post(server, raw), 400, "wait")


@pytest.mark.parametrize("token", [None, "", "wrong-token", 12345, ["list"]])
def test_missing_or_wrong_token_is_401(server, token):
    body = {"action": "start", "command": "true"}
    if token is not None:
        body["token"] = token
    assert_error(post(server, body), 401)


def test_token_is_checked_before_the_fields(server):
    assert_error(post(server, {"action": "no-such-action", "token": "wrong"}), 401, "invalid token")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer wrong-token", "token"])
def test_bad_authorization_headers_are_401(server, header):
    assert_error(post(server, {"action": "list"}, Authorization=header), 401)


def test_conflicting_tokens_are_401(server):
    body = {"action": "list", "token": server.users.tokens["alice"]}
    assert_error(post(server, body, Authorization=f"Bearer {server.users.tokens['bob']}"), 401, "differ")


def test_unknown_job_is_404(server):
    for job_id in ("j" + "b" * 26, "123", "../../etc/passwd", "x" * 1000):
        for action in ("status", "stop", "logs"):
            assert_error(server.call(action, jobID=job_id), 404, "no such job")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_other_than_post_and_get_are_405_in_json(server, method):
    answer = server.raw(method=method)  # GET and HEAD are the web view's (tests/test_web_page.py)
    assert_error(answer, 405, "POST")
    assert answer.headers["Allow"] == "GET, HEAD, POST"


def test_head_elsewhere_is_404_without_a_body(server):
    assert server.raw(method="HEAD", path="/nothing").status == 404


def test_other_paths_are_404_in_json(server):
    assert_error(server.raw(path="/jobs", body=b"{}"), 404, "POST /")
    assert_error(server.raw(method="GET", path="/nothing"), 404, "POST /")
    assert_error(server.raw(method="GET", path="/favicon.ico"), 404)


def test_body_over_the_limit_is_413(server):
    body = {"action": "start", "token": server.users.tokens["alice"], "command": "x" * MAX_BODY_BYTES}
    assert_error(post(server, body), 413, str(MAX_BODY_BYTES))


def test_chunked_body_over_the_limit_is_413(server):
    context = server.tls.client_context()
    with socket.create_connection(("127.0.0.1", server.port)) as raw_socket, \
            context.wrap_socket(raw_socket, server_hostname="127.0.0.1") as tls_socket:
        tls_socket.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            tls_socket.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        tls_socket.sendall(b"0\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}\n"):
            data = tls_socket.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert "error" in json.loads(body)


@pytest.mark.parametrize("headers, contains", [
    ([("Content-Length", "abc")], "Content-Length"),
    ([("Content-Length", "-1")], "Content-Length"),
    ([("Content-Length", "2, 3")], "Content-Length"),
    ([("Content-Length", "2"), ("Content-Length", "3")], "Content-Length"),
    ([("Content-Length", "2"), ("Transfer-Encoding", "chunked")], "both"),
])
def test_contradictory_framing_is_a_json_400(server, headers, contains):
    context = server.tls.client_context()
    with socket.create_connection(("127.0.0.1", server.port)) as raw_socket, \
            context.wrap_socket(raw_socket, server_hostname="127.0.0.1") as tls_socket:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        tls_socket.sendall(f"POST /?token=secret-in-the-url HTTP/1.1\r\nHost: x\r\n{lines}\r\n{{}}".encode())
        response = b""
        while not response.endswith(b"}\n"):
            data = tls_socket.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response
    assert contains in json.loads(body)["error"]


def test_identical_repeated_content_lengths_are_accepted(server):
    body = json.dumps({"action": "list", "token": server.users.tokens["alice"]}).encode()
    context = server.tls.client_context()
    with socket.create_connection(("127.0.0.1", server.port)) as raw_socket, \
            context.wrap_socket(raw_socket, server_hostname="127.0.0.1") as tls_socket:
        tls_socket.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), len(body), body))
        assert tls_socket.recv(100).startswith(b"HTTP/1.1 200")


def test_null_optional_fields_count_as_not_given(server):
    job_id = server.start("echo hi")
    server.wait_final(job_id)
    answer = server.call("status", jobID=job_id, offset=None, wait=None)
    assert answer.status == 200 and answer.body["output"] == "hi\n"
    assert server.call("list", status=None, limit=None).status == 200


def test_no_server_header_gives_away_the_software(server):
    assert "Server" not in server.call("list").headers


def test_tokens_never_reach_the_log_even_from_malformed_requests(server):
    token = server.users.tokens["alice"]
    context = server.tls.client_context()
    for request in (f"POST /?token={token} HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n{{}}",
                    f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\x00\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port)) as raw_socket, \
                context.wrap_socket(raw_socket, server_hostname="127.0.0.1") as tls_socket:
            tls_socket.sendall(request.encode())
            tls_socket.recv(1000)
    assert token not in server.log()


def test_plain_http_is_refused(server):
    with socket.create_connection(("127.0.0.1", server.port)) as plain:
        plain.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}')
        plain.settimeout(5)
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(server.tls.ca))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", server.port)) as raw_socket:
            context.wrap_socket(raw_socket, server_hostname="127.0.0.1")


def test_the_server_keeps_serving_after_all_of_this(server):
    job_id = server.start("echo still here")
    assert server.wait_final(job_id)["output"] == "still here\n"
    log = server.log()
    assert "Traceback" not in log
    for token in server.users.tokens.values():
        assert token not in log
