"""Output as each back end keeps it (local: files; Redis: strings): everything kept up to the cap, then the head
and a rolling tail, read by offsets that never repeat or lose a kept byte, with the same answers from both."""

from __future__ import annotations

import random

import pytest
from store_backends import BACKENDS, LocalBackend, Outputs, RedisBackend, backend_for
from workerctl.store.interface import OutputWriteError
from workerctl.store.output_log import OutputLimits, OutputWriter


@pytest.fixture(params=BACKENDS)
def outputs(request, tmp_path):
    kept = Outputs(backend_for(request, tmp_path / "data"))
    yield kept
    kept.close()


def test_output_within_the_cap_is_kept_whole(outputs):
    sink = outputs.open("job", OutputLimits(head_bytes=10, segment_bytes=4))
    data = bytes(range(26))
    for start in range(0, 26, 3):
        sink.write(data[start:start + 3])
    chunk = outputs.read("job")
    assert b"".join(part.data for part in chunk.parts) == data
    assert {part.skipped for part in chunk.parts} == {0}
    assert (chunk.total, chunk.dropped, chunk.next_offset) == (26, 0, 26)


def test_past_the_cap_the_head_and_the_tail_are_kept(outputs):
    limits = OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=3)
    sink = outputs.open("job", limits)
    data = bytes(range(100))
    sink.write(data)
    chunk = outputs.read("job")
    assert chunk.parts[0].data == data[:10] and chunk.parts[0].skipped == 0
    kept_tail = b"".join(part.data for part in chunk.parts[1:])
    assert kept_tail == data[100 - len(kept_tail):] and len(kept_tail) >= (3 - 1) * 4
    assert chunk.dropped == chunk.parts[1].skipped == 100 - 10 - len(kept_tail)
    assert outputs.backend.pieces("job") <= 1 + 3


def test_a_flood_keeps_no_more_than_the_cap(outputs):
    limits = OutputLimits.for_cap(64 * 1024)
    sink = outputs.open("job", limits)
    for _ in range(160):
        sink.write(bytes(64 * 1024))
    chunk = outputs.read("job")
    assert (chunk.total, sink.total) == (160 * 64 * 1024, 160 * 64 * 1024)
    assert chunk.total - chunk.dropped <= limits.cap_bytes
    assert outputs.backend.pieces("job") <= 1 + limits.tail_segments


@pytest.mark.parametrize("step", [1, 3, 7, 50])
def test_reading_by_offsets_never_repeats_or_loses_a_kept_byte(outputs, step):
    sink = outputs.open("job", OutputLimits(head_bytes=16, segment_bytes=8, tail_segments=2))
    data = bytes(index % 251 for index in range(200))
    sink.write(data)
    received, skipped, offset = bytearray(), 0, 0
    while offset < 200:
        chunk = outputs.read("job", offset, step)
        for part in chunk.parts:
            skipped += part.skipped
            received += part.data
        assert chunk.next_offset > offset
        offset = chunk.next_offset
    assert len(received) + skipped == 200
    assert bytes(received) == data[:16] + data[16 + skipped:]


def test_an_ended_jobs_output_reads_the_same_with_and_without_its_size(outputs):
    for size in (0, 5, 10, 30):
        sink = outputs.open(f"job{size}", OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=2))
        sink.write(bytes(range(size)))
        sink.close()
        for offset in (0, 3, size):
            assert outputs.read(f"job{size}", offset, 7, total=size) == outputs.read(f"job{size}", offset, 7)


@pytest.mark.parametrize("head_bytes", [0, 1, 13])
def test_both_back_ends_answer_every_read_alike(tmp_path, redis_server, redis_location, head_bytes):
    """The same writes, read from every offset with several limits, give equal chunks from both back ends."""
    local, remote = Outputs(LocalBackend(tmp_path / "data")), Outputs(RedisBackend(redis_server, redis_location))
    limits = OutputLimits(head_bytes=head_bytes, segment_bytes=5, tail_segments=3)
    sinks = [local.open("job", limits), remote.open("job", limits)]
    chances = random.Random(head_bytes)
    written = 0
    try:
        for _ in range(12):
            data = bytes(chances.randrange(256) for _ in range(chances.choice([0, 1, 4, 5, 6, 11])))
            for sink in sinks:
                sink.write(data)
            written += len(data)
            for offset in range(0, written + 2):
                for limit in (None, 1, 3, 5, 100):
                    assert local.read("job", offset, limit) == remote.read("job", offset, limit), (offset, limit)
        assert sinks[0].total == sinks[1].total == written
    finally:
        local.close()
        remote.close()


def test_a_directory_that_cannot_be_made_is_an_output_write_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OutputWriteError):
        OutputWriter(tmp_path / "file" / "job", OutputLimits.for_cap(1024 * 1024))


def test_limits_for_a_cap_keep_the_first_half_and_at_least_three_eighths_at_the_end():
    limits = OutputLimits.for_cap(2 * 1024 * 1024)
    assert limits.cap_bytes == 2 * 1024 * 1024
    assert limits.head_bytes == 1024 * 1024
    assert (limits.tail_segments - 1) * limits.segment_bytes >= limits.cap_bytes * 3 // 8


def test_reading_a_job_that_has_no_output_yet(outputs):
    chunk = outputs.read("never-made", 0, 10)
    assert (chunk.parts, chunk.next_offset, chunk.total, chunk.dropped) == ([], 0, 0, 0)


@pytest.mark.parametrize("first_part", [7, 10, 37])  # within the head, at its end, and into the tail
def test_an_output_reopened_goes_on_as_if_it_had_never_been_closed(outputs, first_part):
    limits = OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=3)
    data = bytes(range(60))
    first = outputs.open("job", limits)
    first.write(data[:first_part])
    first.close()
    again = outputs.reopen("job", limits)
    assert again.total == first_part
    again.write(data[first_part:])
    outputs.open("whole", limits).write(data)
    assert outputs.read("job") == outputs.read("whole")


def test_reopening_an_output_never_written_makes_a_new_one(outputs):
    outputs.reopen("job", OutputLimits(head_bytes=10, segment_bytes=4)).write(b"new")
    assert b"".join(part.data for part in outputs.read("job").parts) == b"new"
