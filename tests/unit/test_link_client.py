"""The link's client core (runtime/link_client.py) over a real connection pair: a request goes out under a request
ID of its own and its reply comes back to its requester, change events and the supervisor's closing go to their
handlers from the one table, a reply whose requester gave up is dropped, a message no handler takes is logged,
and a broken link tells every requester still waiting."""

from __future__ import annotations

import logging
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.messages import (
    JobReply,
    JobsChanged,
    Reply,
    StartJob,
    StopJob,
    SupervisorClosing,
    decode,
    encode,
)
from workerctl.runtime.link_client import LinkClient


class Events:
    def __init__(self) -> None:
        self.changed: list[tuple[str, ...]] = []
        self.closing = 0

    def on_closing(self) -> None:
        self.closing += 1


def attached(events: Events) -> tuple[LinkClient, Connection]:
    """A client on one end of a connection pair; the other end, the supervisor's."""
    ours, theirs = Pipe()
    client = LinkClient(Path("unused"), b"key", events.changed.append, events.on_closing)
    client.attach(ours)
    return client, theirs


def test_a_reply_reaches_its_requester_and_events_their_handlers() -> None:
    events = Events()
    client, supervisor = attached(events)
    replies: dict[str, list[Reply | None]] = {"start": [], "stop": []}
    start_id = client.send(StartJob(0, "alice", "true"), replies["start"].append)
    stop_id = client.send(StopJob(0, "alice", "j1"), replies["stop"].append)
    sent = [decode(supervisor.recv_bytes()), decode(supervisor.recv_bytes())]
    assert [(type(message), message.request_id) for message in sent] == [(StartJob, start_id), (StopJob, stop_id)]
    assert start_id != stop_id
    for message in (JobReply(stop_id, "j1", JobStatus.STOPPED), JobsChanged(("j1",)), SupervisorClosing(),
                    JobReply(start_id, "j2", JobStatus.CREATED)):
        supervisor.send_bytes(encode(message))
    client.receive()  # all four are waiting: a send on a socket pair returns once the bytes are on the other end
    assert replies == {"start": [JobReply(start_id, "j2", JobStatus.CREATED)],
                       "stop": [JobReply(stop_id, "j1", JobStatus.STOPPED)]}
    assert (events.changed, events.closing) == ([("j1",)], 1)


def test_a_reply_nobody_waits_for_is_dropped_and_a_message_no_handler_takes_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    client, supervisor = attached(Events())
    replies: list[Reply | None] = []
    request_id = client.send(StopJob(0, "alice", "j1"), replies.append)
    client.forget(request_id)
    supervisor.send_bytes(encode(JobReply(request_id, "j1", JobStatus.STOPPED)))
    supervisor.send_bytes(encode(StopJob(7, "alice", "j1")))  # a request, which only the supervisor takes
    with caplog.at_level(logging.ERROR):
        client.receive()
    assert replies == []
    assert [record.getMessage().startswith("ignored 1 messages the other end of the link should not send")
            for record in caplog.records] == [True]


def test_a_broken_link_tells_every_requester_and_sends_nothing_more() -> None:
    client, supervisor = attached(Events())
    replies: list[Reply | None] = []
    client.send(StartJob(0, "alice", "true"), replies.append)
    client.send(StopJob(0, "alice", "j1"), replies.append)
    supervisor.close()  # unread requests and all: the client sees a reset rather than an end of file
    with pytest.raises((EOFError, OSError)):
        client.receive()
    client.detach()
    assert replies == [None, None] and client.connection is None
    with pytest.raises(OSError):
        client.send(StopJob(0, "alice", "j1"), replies.append)
