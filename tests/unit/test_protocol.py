"""The protocol: the action table and its request parser, the replies, and the link's message codec."""

from __future__ import annotations

import msgspec
import pytest
from workerctl.protocol.actions import (
    ACTIONS,
    Action,
    ListRequest,
    StartRequest,
    StatusRequest,
    answer_type,
    api_fields,
    parse_body,
    parse_request,
)
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import InvalidTransition, JobStatus, check_transition
from workerctl.protocol.limits import JobLimits
from workerctl.protocol.messages import (
    JobReply,
    JobsChanged,
    MalformedMessage,
    Refusal,
    StartJob,
    StopJob,
    SupervisorClosing,
    decode,
    encode,
)
from workerctl.protocol.replies import (
    JobDetail,
    JobList,
    JobSummary,
    JobUsage,
)


def refusal(body) -> str:
    with pytest.raises(ApiError) as raised:
        parse_request(body)
    assert raised.value.kind is ErrorKind.BAD_REQUEST
    return raised.value.message


def test_every_action_has_one_request_type_with_described_fields():
    assert set(ACTIONS) == set(Action)
    for action, request in ACTIONS.items():
        assert request.action is action and request.__doc__
        assert action is Action.LOGS and answer_type(request) is None or issubclass(answer_type(request),
                                                                                    msgspec.Struct)
        for field in api_fields(request):
            assert field.help and field.name


def test_a_request_parses_into_its_typed_request_with_defaults():
    assert parse_request({"action": "start", "command": "ls -l", "token": "t"}) == StartRequest("ls -l", None)
    assert parse_request({"action": "status", "jobID": "j", "offset": 5, "wait": 2}) == StatusRequest("j", 5, 2.0)
    assert parse_request({"action": "list", "status": "running"}) == ListRequest(JobStatus.RUNNING, 100)


def test_a_whole_number_may_be_written_with_a_fraction_as_json_schema_allows():
    assert parse_request({"action": "list", "limit": 5.0}) == ListRequest(None, 5)
    assert type(parse_request({"action": "status", "jobID": "j", "offset": 1e3}).offset) is int
    limits = parse_request({"action": "start", "command": "x", "limits": {"memoryBytes": 2.0**20}}).limits
    assert limits is not None and type(limits.memory_bytes) is int


def test_null_counts_as_not_given():
    assert parse_request({"action": "status", "jobID": "j", "offset": None, "wait": None}) == StatusRequest("j")


@pytest.mark.parametrize("body, message", [
    ({}, 'missing field "action": use one of start, stop, status, list, logs'),
    ({"action": "frobnicate"}, 'unknown action "frobnicate": use one of start, stop, status, list, logs'),
    ({"action": "start"}, "command must be a non-empty string without NUL characters"),
    ({"action": "start", "command": ""}, "command must be a non-empty string without NUL characters"),
    ({"action": "start", "command": "a\x00b"}, "command must be a non-empty string without NUL characters"),
    ({"action": "start", "command": "\ud800"}, "command must be valid Unicode text"),
    ({"action": "start", "command": "x", "env": {"A": "\udfff"}}, "env.A must be valid Unicode text"),
    ({"action": "start", "command": "x", "idempotencyKey": "k" * 201},
     "idempotencyKey must be a non-empty string of at most 200 characters, without NUL characters"),
    ({"action": "start", "command": "x", "host": "a\n"},
     "host must be a host's name (letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64)"),
    ({"action": "start", "command": "x", "labels": ["a", "b\x7f"]},
     "labels[1] must be a non-empty string of at most 64 characters, none of them control characters"),
    ({"action": "start", "command": "x", "env": {"WORKERCTL_X": "1"}},
     "env: WORKERCTL_X is not allowed: names starting WORKERCTL_ are the server's"),
    ({"action": "stop", "jobID": "j", "colour": 1, "size": 2}, "unknown fields for stop: colour, size"),
    ({"action": "stop", "jobID": "j", "colour": 1}, "unknown field for stop: colour"),
    ({"action": "status", "jobID": "j", "offset": -1}, "offset must be a whole number of bytes, 0 or more"),
    ({"action": "status", "jobID": "j", "offset": True}, "offset must be a whole number of bytes, 0 or more"),
    ({"action": "status", "jobID": "j", "wait": 31}, "wait must be a number of seconds from 0 to 30"),
    ({"action": "list", "limit": 0}, "limit must be a whole number from 1 to 1000"),
    ({"action": "list", "status": "done"}, "status must be one of created, running, finished, stopped, error"),
    ({"action": "logs", "jobID": "j", "follow": "yes"}, "follow must be true or false"),
])
def test_a_bad_request_is_refused_with_one_sentence_naming_the_problem(body, message):
    assert refusal(body) == message


@pytest.mark.parametrize("body", [b"", b"[1]", b"{", b'"text"', b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_refused(body):
    with pytest.raises(ApiError) as raised:
        parse_body(body)
    assert raised.value.kind is ErrorKind.BAD_REQUEST


def test_replies_carry_their_json_names_and_come_back_the_same():
    summary = JobSummary("j", JobStatus.FINISHED, "true", 0, None, None, "t0", "t1", "t2")
    detail = JobDetail(**msgspec.structs.asdict(summary), output="hi\n", output_bytes=3, next_offset=3)
    wired = msgspec.to_builtins(detail)
    assert list(wired) == ["jobID", "status", "command", "exitCode", "signal", "reason", "createdAt", "startedAt",
                           "endedAt", "limits", "usage", "labels", "host", "env", "output", "outputBytes",
                           "outputDropped", "nextOffset"]
    assert msgspec.convert(wired, JobDetail) == detail
    listed = JobList((summary, summary))
    assert msgspec.convert(msgspec.to_builtins(listed), JobList) == listed
    limited = JobSummary("j", JobStatus.RUNNING, "true", None, None, None, "t0", "t1", None,
                         JobLimits(30.0, 2**28, 0.5, 64), JobUsage(0.25, 2**20))
    assert msgspec.to_builtins(limited)["limits"]["memoryBytes"] == 2**28 and msgspec.convert(msgspec.to_builtins(limited), JobSummary) == limited


def test_a_start_may_ask_for_limits_of_its_own():
    request = parse_request({"action": "start", "command": "x", "limits": {"timeoutSeconds": 30, "cpus": 0.5}})
    assert request.limits == JobLimits(timeout_seconds=30, cpus=0.5)
    assert decode(encode(StartJob(1, "a", "x", None, request.limits))).limits == request.limits


@pytest.mark.parametrize("limits, message", [
    ([1], "limits must be an object with any of timeoutSeconds, memoryBytes, cpus"),
    ({"memory": 5}, "unknown field in limits: memory"),
    ({"timeoutSeconds": 0}, "limits.timeoutSeconds must be a positive number"),
    ({"cpus": "1"}, "limits.cpus must be a positive number"),
    ({"memoryBytes": 1.5}, "limits.memoryBytes must be a positive whole number of bytes"),
    ({"memoryBytes": True}, "limits.memoryBytes must be a positive whole number of bytes"),
    ({"processes": 4}, "unknown field in limits: processes"),  # the server's to set
])
def test_limits_that_make_no_sense_are_refused(limits, message):
    assert refusal({"action": "start", "command": "x", "limits": limits}) == message


@pytest.mark.parametrize("message", [
    StartJob(1, "alice", "ls -l", "key"), StopJob(2, "bob", "j"), JobReply(3, "j", JobStatus.RUNNING),
    Refusal(4, ErrorKind.QUEUE_FULL, "too many"), JobsChanged(("a", "b")), SupervisorClosing(),
])
def test_link_messages_survive_their_codec(message):
    decoded = decode(encode(message))
    assert decoded == message and type(decoded) is type(message)


@pytest.mark.parametrize("data", [b"", b"[]", b'{"type": "nope"}', b'{"type": "stop", "user": "a"}',
                                  b'{"type": "job", "request_id": 1, "job_id": "j", "status": "sleeping"}'])
def test_anything_else_on_the_link_is_a_malformed_message(data):
    with pytest.raises(MalformedMessage):
        decode(data)


def test_a_refusal_carries_its_error_kind_across():
    error = Refusal.of(7, ApiError(ErrorKind.STORAGE_FULL, "disk full")).error()
    assert (error.kind, error.message) == (ErrorKind.STORAGE_FULL, "disk full")


def test_final_statuses_are_final():
    check_transition(JobStatus.CREATED, JobStatus.STOPPED)
    for final in (JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.ERROR):
        with pytest.raises(InvalidTransition):
            check_transition(final, JobStatus.RUNNING)
