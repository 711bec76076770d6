"""Several users drive one server through start, stop, status and list in orders hypothesis picks, and after
every step the server's answers keep the API's promises:

- no user sees another's job: asking about it is answered exactly as about a job that does not exist, and a
  user's list holds only their own jobs;
- a status never goes back (created, running, then final), and a final status is final: once a job is seen
  finished, stopped or in error, it is seen so ever after, with the same exit code and signal, and stop answers
  it unchanged;
- the pool's limits hold: by the jobs' own start and end times (or, for a job still running, the moment its
  owner's list was asked for), never more than --max-jobs running at once, nor more than --max-jobs-per-user of
  one user's, and never more than --max-queued-per-user waiting (beyond the jobs given a free slot of their
  user's and not launched yet, which are still `created` too);
- nothing is answered 5xx, and every refusal is one the API documents for that action.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule
from support import Answer, Server, Tls, Users, start_server
from workerctl.store.users import add_user

pytestmark = pytest.mark.slow  # hypothesis drives a server through hundreds of requests

USERS = ("alice", "bob", "carol")
MAX_JOBS, MAX_JOBS_PER_USER, MAX_QUEUED_PER_USER = 3, 2, 3
COMMANDS = ("sleep 30", "true", "exit 3", "echo hello")
FINAL = {"finished", "stopped", "error"}
ORDER = {"created": 0, "running": 1, **{status: 2 for status in FINAL}}
UNKNOWN_JOB = "jzzzzzzzzzzzzzzzzzzzzzzzzzz"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("invariants")
    file = home / "users.toml"
    users = Users(file, {name: add_user(file, name) for name in USERS})
    server = start_server(Path(home), tls, users, "--max-jobs", str(MAX_JOBS),
                          "--max-jobs-per-user", str(MAX_JOBS_PER_USER),
                          "--max-queued-per-user", str(MAX_QUEUED_PER_USER), "--kill-grace", "0.5",
                          "--rate-limit", "0")
    yield server
    assert server.stop() == 0, server.log()


def _moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of the half-open spans [start, end) that overlap at one moment (an empty one never does)."""
    spans = [(start, end) for start, end in spans if start < end]
    edges = sorted(itertools.chain(((start, 1) for start, _ in spans), ((end, -1) for _, end in spans)))
    running = peak = 0
    for _, change in edges:  # at one moment an end (-1) sorts before a start (+1): a slot handed over
        running += change
        peak = max(peak, running)
    return peak


class Jobs(RuleBasedStateMachine):
    """The model: who owns which job, and the final status each ended job was first seen with. It spans every
    run of the machine, as the server does."""

    server: Server
    owners: dict[str, str] = {}
    progress: dict[str, int] = {}
    finals: dict[str, tuple[str, int | None, str | None]] = {}

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.started_here: list[str] = []

    def call(self, action: str, user: str, **fields: Any) -> Answer:
        answer = self.server.call(action, user, **fields)
        assert answer.status < 500, (action, answer.body)
        assert set(answer.body) != {"error"} or answer.status >= 400
        return answer

    def saw(self, job: dict[str, Any]) -> None:
        """Check one sighting of a job against the model and note it if it has ended."""
        assert self.owners.get(job["jobID"]) is not None
        rank = ORDER[job["status"]]
        assert rank >= self.progress.get(job["jobID"], 0), f"job {job['jobID']} went back to {job['status']}"
        self.progress[job["jobID"]] = rank
        seen = (job["status"], job["exitCode"], job["signal"])
        first = self.finals.setdefault(job["jobID"], seen) if job["status"] in FINAL else None
        assert first is None or first == seen, f"job {job['jobID']} was {first}, now {seen}"

    @initialize(target=jobs, user=st.sampled_from(USERS))
    def first_job(self, user: str) -> str:
        return self.start_job(user, "true")

    @rule(target=jobs, user=st.sampled_from(USERS), command=st.sampled_from(COMMANDS))
    def start(self, user: str, command: str) -> str:
        return self.start_job(user, command)

    def start_job(self, user: str, command: str) -> str:
        answer = self.call("start", user, command=command)
        if answer.status == 429:
            assert "waiting already" in answer.body["error"], answer.body  # the user's queue is full
            return UNKNOWN_JOB
        assert answer.status == 200 and answer.body["status"] == "created", answer.body
        self.owners[answer.body["jobID"]] = user
        self.started_here.append(answer.body["jobID"])
        return answer.body["jobID"]

    @rule(job=jobs, user=st.sampled_from(USERS))
    def status(self, job: str, user: str) -> None:
        answer = self.call("status", user, jobID=job)
        if self.owners.get(job) != user:
            self.assert_nothing_there(answer)
            return
        assert answer.status == 200, answer.body
        self.saw(answer.body)

    @rule(job=consumes(jobs), user=st.sampled_from(USERS))
    def stop(self, job: str, user: str) -> None:
        answer = self.call("stop", user, jobID=job)
        if self.owners.get(job) != user:
            self.assert_nothing_there(answer)
            return
        assert answer.status == 200 and answer.body["status"] in FINAL, answer.body
        expected = self.finals[job][0] if job in self.finals else None
        assert expected in (None, answer.body["status"]), (expected, answer.body)

    @rule(user=st.sampled_from(USERS), status=st.sampled_from((None, "created", "running", "finished", "stopped")))
    def list_jobs(self, user: str, status: str | None) -> None:
        answer = self.call("list", user, status=status)
        assert answer.status == 200, answer.body
        for job in answer.body["jobs"]:
            assert self.owners.get(job["jobID"]) == user, f"{user} was shown {job['jobID']}"
            assert status in (None, job["status"])

    def assert_nothing_there(self, answer: Answer) -> None:
        """Another user's job is answered exactly as one that does not exist."""
        unknown = self.server.call("status", "alice", jobID=UNKNOWN_JOB)
        assert (answer.status, answer.body) == (unknown.status, unknown.body) == (404, {"error": "no such job"})

    @invariant()
    def each_user_sees_a_consistent_pool(self) -> None:
        everyone: list[dict[str, Any]] = []
        spans: dict[str, tuple[float, float]] = {}
        for user in USERS:
            # The lists are not one snapshot: a job a list shows running surely ran from its start until this
            # moment (the server's clock is this host's), and may have ended since.
            asked_at = time.time()
            answer = self.call("list", user, limit=1000)
            assert answer.status == 200, answer.body
            everyone += answer.body["jobs"]
            # One list is: a job given a slot stays `created` until it is launched (its owner's home may be in
            # the making), so beyond the queue there may be as many as the user has slots free, never more.
            created = sum(job["status"] == "created" for job in answer.body["jobs"])
            running = sum(job["status"] == "running" for job in answer.body["jobs"])
            assert created <= MAX_QUEUED_PER_USER + MAX_JOBS_PER_USER - running, (user, created, running)
            for job in answer.body["jobs"]:
                if job["startedAt"]:
                    spans[job["jobID"]] = (_moment(job["startedAt"]),
                                           _moment(job["endedAt"]) if job["endedAt"] else asked_at)
        for job in everyone:
            self.saw(job)
        assert most_at_once(list(spans.values())) <= MAX_JOBS
        for user in USERS:
            assert most_at_once([span for job, span in spans.items() if self.owners[job] == user]) <= MAX_JOBS_PER_USER

    def teardown(self) -> None:
        for job in self.started_here:  # so that the next run starts with a free pool
            answer = self.server.call("stop", self.owners[job], jobID=job)
            assert answer.status == 200, answer.body


Jobs.TestCase.settings = settings(max_examples=12, stateful_step_count=25, deadline=None, database=None,
                                  suppress_health_check=[HealthCheck.too_slow])
TestSeveralUsers = Jobs.TestCase


@pytest.fixture(autouse=True)
def _server_for_the_machine(shared: Server) -> None:
    Jobs.server = shared


def test_spans_overlap_counts_a_handed_over_slot_once() -> None:
    assert most_at_once([(0, 1), (1, 2)]) == 1
    assert most_at_once([(0, 2), (1, 3), (1.5, float("inf"))]) == 3
