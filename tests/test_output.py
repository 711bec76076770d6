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
from workerctl.store.output_log import OutputLimits, OutputWriter, read_output
from workerctl.web.job_view import complete_utf8_length

MIB = 1024 * 1024


def test_output_within_the_cap_is_kept_whole(tmp_path):
    writer = OutputWriter(tmp_path / "job", OutputLimits(head_bytes=10, segment_bytes=4))
    data = bytes(range(26))
    for start in range(0, 26, 3):
        writer.write(data[start:start + 3])
    chunk = read_output(tmp_path / "job")
    assert b"".join(part.data for part in chunk.parts) == data
    assert {part.skipped for part in chunk.parts} == {0}
    assert (chunk.total, chunk.dropped, chunk.next_offset) == (26, 0, 26)


def test_past_the_cap_the_head_and_the_tail_are_kept(tmp_path):
    limits = OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=3)
    writer = OutputWriter(tmp_path / "job", limits)
    data = bytes(range(100))
    writer.write(data)
    chunk = read_output(tmp_path / "job")
    assert chunk.parts[0].data == data[:10] and chunk.parts[0].skipped == 0
    kept_tail = b"".join(part.data for part in chunk.parts[1:])
    assert kept_tail == data[100 - len(kept_tail):] and len(kept_tail) >= (3 - 1) * 4
    assert chunk.dropped == chunk.parts[1].skipped == 100 - 10 - len(kept_tail)
    assert len(list((tmp_path / "job").iterdir())) <= 1 + 3


@pytest.mark.parametrize("step", [1, 3, 7, 50])
def test_reading_by_offsets_never_repeats_or_loses_a_kept_byte(tmp_path, step):
    writer = OutputWriter(tmp_path / "job", OutputLimits(head_bytes=16, segment_bytes=8, tail_segments=2))
    data = bytes(index % 251 for index in range(200))
    writer.write(data)
    received, skipped, offset = bytearray(), 0, 0
    while offset < 200:
        chunk = read_output(tmp_path / "job", offset, step)
        for part in chunk.parts:
            skipped += part.skipped
            received += part.data
        assert chunk.next_offset > offset
        offset = chunk.next_offset
    assert len(received) + skipped == 200
    assert bytes(received) == data[:16] + data[16 + skipped:]


def test_a_character_cut_at_the_end_is_held_back():
    euro = "\u20ac".encode()
    assert complete_utf8_length(b"ab" + euro[:2]) == 2
    assert complete_utf8_length(b"ab" + euro) == 5
    assert complete_utf8_length(b"ab\xff") == 3  # invalid, not incomplete: shown as U+FFFD
    assert complete_utf8_length(b"") == 0


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


def test_an_ended_jobs_output_reads_the_same_with_and_without_its_size(tmp_path):
    for size in (0, 5, 10, 30):
        directory = tmp_path / f"job{size}"
        writer = OutputWriter(directory, OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=2))
        writer.write(bytes(range(size)))
        writer.close()
        for offset in (0, 3, size):
            assert read_output(directory, offset, 7, total=size) == read_output(directory, offset, 7)
