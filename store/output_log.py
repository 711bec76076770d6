"""A job's output on disk, bounded: the first half of the cap is kept whole, the rest as a rolling tail.

The local back end keeps each job's combined stdout and stderr here as it arrives, and reads it back to answer
status and to stream logs.

Layout, one directory per job:
  head                   bytes [0, head_bytes) of the stream
  tail.<offset>          consecutive segments of segment_bytes each, named by the stream offset they start at

While a job writes no more than the cap, everything is kept. Past it, the oldest tail segment is deleted as each
new one starts, so the directory holds the head and the last few segments: the start-up error and the final
error both survive, and the bytes in between are reported as dropped. Files are only ever appended to and
deleted, never overwritten, so a reader holding a segment open is never handed bytes that changed under it.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from workerctl.store.interface import OutputChunk, OutputPart, OutputWriteError
from workerctl.store.output_reads import assemble_chunk

HEAD_NAME = "head"
TAIL_PREFIX = "tail."
_TAIL_SEGMENTS = 4


@dataclass(frozen=True)
class OutputLimits:
    """How much of one job's output is kept: `head_bytes` whole, then `tail_segments` rolling segments."""

    head_bytes: int
    segment_bytes: int
    tail_segments: int = _TAIL_SEGMENTS

    @classmethod
    def for_cap(cls, cap_bytes: int) -> OutputLimits:
        """Keep everything up to `cap_bytes`; past it, the first half and at least the last 3/8."""
        segment = max(cap_bytes // (2 * _TAIL_SEGMENTS), 1)
        return cls(head_bytes=cap_bytes - segment * _TAIL_SEGMENTS, segment_bytes=segment)

    @property
    def cap_bytes(self) -> int:
        return self.head_bytes + self.segment_bytes * self.tail_segments


class OutputWriter:
    """Appends a job's output to its directory, keeping it within its limits (an OutputSink)."""

    def __init__(self, directory: Path, limits: OutputLimits) -> None:
        self.directory = directory
        self.limits = limits
        self.total = 0
        try:
            directory.mkdir(mode=0o700)
        except OSError as error:
            raise OutputWriteError(error.errno, f"cannot create {directory}: {error.strerror}") from error
        self._fd = _create(directory / HEAD_NAME)
        self._file_end = limits.head_bytes
        self._segments: deque[Path] = deque()

    @classmethod
    def reopen(cls, directory: Path, limits: OutputLimits) -> OutputWriter:
        """Go on appending to the output an earlier run wrote to `directory` with the same limits (a new one if
        there is none)."""
        pieces = _pieces(directory)
        if not pieces:
            return cls(directory, limits)
        writer = cls.__new__(cls)
        writer.directory = directory
        writer.limits = limits
        start, size, path = pieces[-1]
        writer.total = start + size
        writer._file_end = start + (limits.head_bytes if start == 0 else limits.segment_bytes)
        writer._segments = deque(path for start, _, path in pieces if start > 0)
        try:
            writer._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            raise OutputWriteError(error.errno, f"cannot open {path}: {error.strerror}") from error
        return writer

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.total == self._file_end:
                self._start_segment()
            room = self._file_end - self.total
            written = _write(self._fd, view[:room])
            self.total += written
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _start_segment(self) -> None:
        os.close(self._fd)
        self._fd = -1
        path = self.directory / f"{TAIL_PREFIX}{self.total:020d}"
        self._fd = _create(path)
        self._segments.append(path)
        self._file_end = self.total + self.limits.segment_bytes
        if len(self._segments) > self.limits.tail_segments:
            self._segments.popleft().unlink(missing_ok=True)


def _create(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise OutputWriteError(error.errno, f"cannot create {path}: {error.strerror}") from error


def _write(fd: int, data: memoryview) -> int:
    try:
        return os.write(fd, data)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputWriteError(error.errno, "the disk is full") from error
        raise OutputWriteError(error.errno, error.strerror) from error


def read_output(directory: Path, offset: int = 0, limit: int | None = None,
                total: int | None = None) -> OutputChunk:
    """Read a job's kept output from stream offset `offset`, at most `limit` bytes of it. `total`, where known
    (the job has ended), lets the common case, all of it in the head, take a single file read."""
    if total is not None:
        chunk = _read_head_only(directory, offset, limit, total)
        if chunk is not None:
            return chunk
    return assemble_chunk(_pieces(directory), offset, limit, _read_range)


def _read_head_only(directory: Path, offset: int, limit: int | None, total: int) -> OutputChunk | None:
    """The chunk, if all `total` bytes of the output are in the head file; else None."""
    try:
        fd = os.open(directory / HEAD_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if os.fstat(fd).st_size != total:
            return None
        if offset >= total:
            return OutputChunk([], offset, total, 0)
        data = os.pread(fd, total - offset if limit is None else min(limit, total - offset), offset)
    finally:
        os.close(fd)
    return OutputChunk([OutputPart(0, data)], offset + len(data), total, 0)


def _pieces(directory: Path) -> list[tuple[int, int, Path]]:
    """(stream offset, size, path) of every file of the job's output, in stream order."""
    pieces = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name == HEAD_NAME:
            start = 0
        elif entry.name.startswith(TAIL_PREFIX):
            start = int(entry.name[len(TAIL_PREFIX):])
        else:
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:
            continue
        pieces.append((start, size, Path(entry.path)))
    pieces.sort()
    return pieces


def _read_range(path: Path, offset: int, size: int) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as file:
            return os.pread(file.fileno(), size, offset)
    except FileNotFoundError:
        return None
