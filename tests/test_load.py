"""A flood of clients mixing start, status and stop for a fixed time: no 5xx, every job ends, and the server's
descriptors and memory come back near where they started. (A longer soak of the same is in bench/.)"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from support import marker, poll_until, processes_with

pytestmark = pytest.mark.slow  # a flood for a fixed time

CLIENTS = 24
SECONDS = 4.0


@pytest.fixture(scope="module")
def server_flags():
    return "--log-level", "WARNING", "--retention-jobs", "100000", "--rate-limit", "0"


def footprint(server):
    """Each server process's descriptors and RSS. The network namespaces the supervisor holds for jobs to come
    are left out: it keeps a bounded number (made ahead, and kept for each user's next job) by design."""
    processes = [psutil.Process(server.child_pid(name)) for name in ("web", "supervisor")]
    return {process.pid: (len(_descriptors_but_namespaces(process.pid)), process.memory_info().rss)
            for process in processes}


def _descriptors_but_namespaces(pid):
    descriptors = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if not os.readlink(fd).startswith("net:["):
                descriptors.append(fd)
        except FileNotFoundError:  # closed while listed
            pass
    return descriptors


class Client:
    """One user of the server, on one kept-alive HTTPS connection."""

    def __init__(self, server, user):
        self.server = server
        self.token = server.users.tokens[user]
        self.connection = http.client.HTTPSConnection("127.0.0.1", server.port,
                                                      context=server.tls.client_context(), timeout=30)

    def call(self, action, **fields):
        self.connection.request("POST", "/", json.dumps({"action": action, **fields}),
                                {"Authorization": f"Bearer {self.token}"})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())


def hammer(server, user, mark, deadline, outcomes, started, lock):
    client = Client(server, user)
    rng = random.Random()
    mine = []
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.35 or not mine:
            command = rng.choice(["true", "echo hello", "sleep 0.2", f"sleep {mark}", "exit 3"])
            status, answer = client.call("start", command=command)
            if status == 200:
                mine.append(answer["jobID"])
        elif roll < 0.85:
            status, _ = client.call("status", jobID=rng.choice(mine), wait=rng.choice([0, 0, 0.05]))
        else:
            status, _ = client.call("stop", jobID=rng.choice(mine))
        with lock:
            outcomes[status] += 1
    for job_id in mine:
        client.call("stop", jobID=job_id)
    with lock:
        started.extend((user, job_id) for job_id in mine)
    client.connection.close()


def test_a_flood_of_mixed_requests(server):
    warm = server.start("true")
    server.wait_final(warm)
    before = footprint(server)
    mark = marker()
    outcomes, started, lock = Counter(), [], threading.Lock()
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=hammer, args=(server, ("alice", "bob")[number % 2], mark, deadline,
                                                     outcomes, started, lock)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.total() >= CLIENTS * 10, outcomes  # a flood, however slow the machine
    assert set(outcomes) == {200}, outcomes
    for user, job_id in started:
        assert server.wait_final(job_id, user)["status"] in ("finished", "stopped", "error")
    poll_until(lambda: not processes_with(mark), message="no job process left")
    after = poll_until(lambda: (lambda now: now if all(
        now[pid][0] <= before[pid][0] + 5 for pid in before) else None)(footprint(server)),
        message="descriptors to come back")
    for pid, (fds, rss) in after.items():
        assert rss - before[pid][1] < 40 * 1024 * 1024, (pid, before[pid], (fds, rss))
    supervisor = server.child_pid("supervisor")
    namespaces = len(list(Path(f"/proc/{supervisor}/fd").iterdir())) - len(_descriptors_but_namespaces(supervisor))
    assert namespaces <= 8 + 16 * 2, namespaces  # made ahead, and kept for each of the two users' next (16 each)
    print(f"\n{outcomes.total()} requests ({dict(outcomes)}), {len(started)} jobs; "
          f"(fds, RSS MiB) before: {[(f, r // 2**20) for f, r in before.values()]}, "
          f"after: {[(f, r // 2**20) for f, r in after.values()]}")
