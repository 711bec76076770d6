"""The local back end's output files: everything kept up to the cap, then the head and a rolling tail, read by
offsets that never repeat or lose a kept byte."""

from __future__ import annotations

import pytest
from workerctl.store.interface import OutputWriteError
from workerctl.store.output_log import OutputLimits, OutputWriter, read_output


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


def test_an_ended_jobs_output_reads_the_same_with_and_without_its_size(tmp_path):
    for size in (0, 5, 10, 30):
        directory = tmp_path / f"job{size}"
        writer = OutputWriter(directory, OutputLimits(head_bytes=10, segment_bytes=4, tail_segments=2))
        writer.write(bytes(range(size)))
        writer.close()
        for offset in (0, 3, size):
            assert read_output(directory, offset, 7, total=size) == read_output(directory, offset, 7)


def test_a_directory_that_cannot_be_made_is_an_output_write_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OutputWriteError):
        OutputWriter(tmp_path / "file" / "job", OutputLimits.for_cap(1024 * 1024))


def test_limits_for_a_cap_keep_the_first_half_and_at_least_three_eighths_at_the_end():
    limits = OutputLimits.for_cap(2 * 1024 * 1024)
    assert limits.cap_bytes == 2 * 1024 * 1024
    assert limits.head_bytes == 1024 * 1024
    assert (limits.tail_segments - 1) * limits.segment_bytes >= limits.cap_bytes * 3 // 8


def test_reading_a_job_that_has_no_output_yet(tmp_path):
    chunk = read_output(tmp_path / "never-made", 0, 10)
    assert (chunk.parts, chunk.next_offset, chunk.total, chunk.dropped) == ([], 0, 0, 0)
