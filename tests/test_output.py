"""Output: the per-job cap with its head and tail, offsets that never skip or repeat a byte, live followers,
and flat server memory however much a job writes."""

from __future__ import annotations

import http.client
import json
import threading
import time

import psutil
import pytest
from support import marker, poll_until

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server_flags():
    return "--max-output-bytes", str(MIB)


BIG = "echo FIRST LINE; head -c 3000000 /dev/zero | tr '\\0' .; echo; echo LAST LINE"


def test_a_job_writing_past_the_cap_keeps_its_first_and_last_lines(server):
    status = server.wait_final(server.start(BIG))
    output = status["output"]
    assert output.startswith("FIRST LINE\n") and output.endswith("LAST LINE\n")
    assert status["outputBytes"] == 11 + 3_000_000 + 1 + 10
    assert 0 < status["outputDropped"] < status["outputBytes"] - MIB // 2
    assert f"[workerctl: {status['outputDropped']} bytes of output dropped here]\n" in output
    assert len(output) < MIB + 100


def test_offsets_walk_across_the_cap(server):
    job_id = server.start(BIG)
    final = server.wait_final(job_id)
    text, offset = "", 0
    while offset < final["outputBytes"]:
        answer = server.status(job_id, offset=offset)
        text += answer["output"]
        assert answer["nextOffset"] > offset
        offset = answer["nextOffset"]
    assert text == final["output"]


def follow(server, job_id, received, arrivals):
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls.client_context())
    connection.request("POST", "/", json.dumps({"action": "logs", "jobID": job_id, "follow": True}),
                       {"Authorization": f"Bearer {server.users.tokens['alice']}"})
    response = connection.getresponse()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    while data := response.read1(65536):
        received.extend(data)
        arrivals.append((time.monotonic(), bytes(received)))
    connection.close()


def test_followers_see_each_line_as_it_is_written_and_the_same_bytes(server):
    job_id = server.start("for i in 1 2 3 4; do echo line $i; sleep 0.3; done")
    server.wait_running(job_id)
    followers = [(bytearray(), []) for _ in range(2)]
    threads = [threading.Thread(target=follow, args=(server, job_id, *follower)) for follower in followers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    ended = time.monotonic()
    for received, arrivals in followers:
        assert bytes(received) == b"line 1\nline 2\nline 3\nline 4\n"
        first_seen = next(when for when, so_far in arrivals if b"line 2\n" in so_far)
        assert ended - first_seen > 0.4, "lines arrived only at the end"
    assert followers[0][0] == followers[1][0]


def test_logs_without_follow_prints_what_there_is_and_returns(server):
    job_id = server.start(f"echo now; sleep {marker()}")
    poll_until(lambda: server.status(job_id)["output"] == "now\n", message="the output")
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls.client_context())
    connection.request("POST", "/", json.dumps({"action": "logs", "jobID": job_id}),
                       {"Authorization": f"Bearer {server.users.tokens['alice']}"})
    assert connection.getresponse().read() == b"now\n"
    connection.close()
    assert server.status(job_id)["status"] == "running"  # it answered without waiting for the job to end
    server.call("stop", jobID=job_id)


def test_streaming_100_mb_keeps_the_servers_memory_flat(server_factory):
    server = server_factory("--max-output-bytes", str(200 * MIB))
    web = psutil.Process(server.child_pid("web"))
    supervisor = psutil.Process(server.child_pid("supervisor"))
    job_id = server.start("head -c 100000000 /dev/zero")
    baseline = web.memory_info().rss + supervisor.memory_info().rss
    peak = [baseline]

    def sample():
        while sampling:
            peak[0] = max(peak[0], web.memory_info().rss + supervisor.memory_info().rss)
            time.sleep(0.02)

    sampling = True
    sampler = threading.Thread(target=sample)
    sampler.start()
    count = 0
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls.client_context())
    connection.request("POST", "/", json.dumps({"action": "logs", "jobID": job_id, "follow": True}),
                       {"Authorization": f"Bearer {server.users.tokens['alice']}"})
    response = connection.getresponse()
    while data := response.read1(MIB):
        count += len(data)
    connection.close()
    sampling = False
    sampler.join()
    assert count == 100_000_000
    assert peak[0] - baseline < 20 * MIB, f"grew by {(peak[0] - baseline) / MIB:.1f} MiB"
    print(f"\nstreaming 100 MB: server RSS {baseline / MIB:.0f} MiB, at most {(peak[0] - baseline) / MIB:.1f} MiB more")
