"""A job's output in Redis, bounded exactly as the local back end bounds it on disk (output_log.py): the head
kept whole, then a rolling tail of segments, the oldest deleted as each new one starts.

    output:<job>      a hash: `limits` ("HEAD SEGMENT SEGMENTS MARK": bytes, bytes, how many kept, the writer's
                      mark) and `total`
    piece:0:<job>     the head, bytes [0, HEAD) of the stream
    piece:<n>:<job>   tail segment n (from 1), bytes [HEAD + (n-1)·SEGMENT, HEAD + n·SEGMENT)

Each write is one MULTI/EXEC of its SETRANGEs, the deletion of the segments that fell out of the tail and the new
total, so a reader never sees a total without the bytes behind it; sent twice, it stores the same. Which pieces
are kept follows from the limits and the total alone, so reading needs no listing: one HMGET, then a GETRANGE per
piece read.
"""

from __future__ import annotations

import errno
import logging
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from workerctl.store.interface import OutputChunk, OutputWriteError
from workerctl.store.output_log import OutputLimits
from workerctl.store.output_reads import assemble_chunk
from workerctl.store.redis_connection import RedisKeys, describe

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRY_SECONDS = 1.0


class OutputHeldBack(Exception):
    """Redis cannot be reached: the output stays staged in memory, to be sent later."""


def kept_pieces(limits: OutputLimits, total: int) -> list[tuple[int, int, int]]:
    """(stream offset, size, piece number) of every piece kept once `total` bytes are written, in stream order."""
    pieces = [(0, min(total, limits.head_bytes), 0)]
    if total > limits.head_bytes:
        last = (total - limits.head_bytes - 1) // limits.segment_bytes + 1
        for piece in range(max(1, last - limits.tail_segments + 1), last + 1):
            start = limits.head_bytes + (piece - 1) * limits.segment_bytes
            pieces.append((start, min(limits.segment_bytes, total - start), piece))
    return pieces


def _limits(text: bytes) -> OutputLimits:
    head, segment, segments = (int(number) for number in text.split()[:3])
    return OutputLimits(head, segment, segments)


class HeldBack:
    """The outputs of one writer that hold bytes back, and when a write may next try Redis: one wait for them
    all, so that a Redis that hangs (rather than refuses) stalls the writer once a second, not once per job."""

    def __init__(self) -> None:
        self.sinks: set[RedisOutputSink] = set()
        self.next_attempt = 0.0  # monotonic


class RedisOutputSink:
    """Appends one job's output to Redis within its limits (an OutputSink).

    Bytes are staged per piece, then written in one MULTI/EXEC of SETRANGEs at their offsets, the deletion of
    the pieces that fell out of the tail and the new total. Written by offset, a transaction sent again writes
    the same bytes to the same place: if Redis cannot be reached (or does not answer in time, having perhaps
    done it), the staged bytes are held back and sent again later, by the next write at most once a second or
    by the writer's commit (`held_back` is the writer's). Only what can still be kept is held: the head, and the
    tail segments the total so far keeps, so a job writing on while Redis is down holds at most its output cap
    in memory."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, where: str, job_id: str, limits: OutputLimits,
                 held_back: HeldBack, stored_total: int | None = None) -> None:
        """A new output; or, with `stored_total`, the output stored already with these limits, to append to."""
        self.total = stored_total or 0
        self._client = client
        self._keys = keys
        self._where = where
        self._job_id = job_id
        self._limits = limits
        self._held_back = held_back
        self._stored_total = self.total  # the total Redis has
        self._staged: dict[int, bytearray] = {}  # piece → bytes not yet in Redis, from the stored total on
        self._limits_stored = stored_total is not None
        if not self._limits_stored:
            try:
                self._store_limits()
            except OutputHeldBack:  # stored by the first flush that reaches Redis
                pass

    @classmethod
    def reopen(cls, client: redis.Redis, keys: RedisKeys, where: str, job_id: str, limits: OutputLimits,
               held_back: HeldBack) -> RedisOutputSink:
        """Go on appending to the output an earlier run of the supervisor stored for the job, with the limits
        and mark it stored (a new output if it stored none); OutputWriteError if Redis cannot say."""
        try:
            stored_limits, total = client.hmget(keys.output(job_id), ["limits", "total"])
        except redis.RedisError as error:
            raise OutputWriteError(errno.EIO, describe(error, where)) from error
        if not stored_limits:
            return cls(client, keys, where, job_id, limits, held_back)
        return cls(client, keys, where, job_id, _limits(stored_limits), held_back, int(total or 0))

    def write(self, data: bytes) -> None:
        """Stage `data` and send what is staged, unless Redis could not be reached less than a second ago;
        OutputWriteError if Redis refuses it (full)."""
        if not data:
            return
        self._stage(data)
        if time.monotonic() < self._held_back.next_attempt:
            self._held_back.sinks.add(self)
            return
        try:
            self.flush()
        except OutputHeldBack:
            pass

    def flush(self) -> None:
        """Send every staged byte; OutputHeldBack if Redis cannot be reached (they stay staged), OutputWriteError
        if it refuses them."""
        if not self._limits_stored:
            self._store_limits()
        if not self._staged and self._stored_total == self.total:
            return
        transaction = self._client.pipeline(transaction=True)
        for piece, data in self._staged.items():
            start = self._piece_start(piece)
            transaction.setrange(self._keys.output_piece(self._job_id, piece), max(self._stored_total - start, 0),
                                 bytes(data))
        kept = {piece for _, _, piece in kept_pieces(self._limits, self.total)}
        for _, _, piece in kept_pieces(self._limits, self._stored_total):
            if piece not in kept:
                transaction.delete(self._keys.output_piece(self._job_id, piece))
        transaction.hset(self._keys.output(self._job_id), "total", self.total)
        self._send(transaction.execute)
        self._stored_total = self.total
        self._staged.clear()
        self._held_back.sinks.discard(self)

    def close(self) -> None:
        """Nothing to release: bytes still held back stay with the writer, which sends them at its next commit."""

    def _store_limits(self) -> None:
        # The limits, then a mark of this sink's own: sent again after a lost connection, HSETNX finds what its
        # first sending stored, and only then is the job's output not another's.
        limits = (f"{self._limits.head_bytes} {self._limits.segment_bytes} {self._limits.tail_segments} "
                  f"{secrets.token_hex(8)}")
        key = self._keys.output(self._job_id)
        if not self._send(lambda: self._client.hsetnx(key, "limits", limits)) and \
                self._send(lambda: self._client.hget(key, "limits")) != limits.encode():
            raise OutputWriteError(errno.EEXIST, f"job {self._job_id} has output already")
        self._limits_stored = True

    def _stage(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            piece = self._piece_at(self.total)
            room = view[:self._piece_start(piece + 1) - self.total]
            self._staged.setdefault(piece, bytearray()).extend(room)
            self.total += len(room)
            view = view[len(room):]
        kept = {piece for _, _, piece in kept_pieces(self._limits, self.total)}
        for piece in [piece for piece in self._staged if piece not in kept]:  # fell out of the tail meanwhile
            del self._staged[piece]

    def _piece_at(self, offset: int) -> int:
        if offset < self._limits.head_bytes:
            return 0
        return (offset - self._limits.head_bytes) // self._limits.segment_bytes + 1

    def _piece_start(self, piece: int) -> int:
        return 0 if piece == 0 else self._limits.head_bytes + (piece - 1) * self._limits.segment_bytes

    def _send(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if not self._held_back.sinks:
                log.warning("holding the jobs' output back until Redis can be reached: %s",
                            describe(error, self._where))
            self._held_back.sinks.add(self)
            self._held_back.next_attempt = time.monotonic() + _RETRY_SECONDS
            raise OutputHeldBack(describe(error, self._where)) from error
        except redis.RedisError as error:
            reason = describe(error, self._where)
            raise OutputWriteError(errno.ENOSPC if "out of memory" in reason else errno.EIO, reason) from error


def read_output(client: redis.Redis, keys: RedisKeys, job_id: str, offset: int, limit: int | None) -> OutputChunk:
    """The job's kept output from stream offset `offset`, at most `limit` bytes of it; RedisError if Redis
    cannot answer."""
    limits, total = client.hmget(keys.output(job_id), "limits", "total")
    pieces = [] if limits is None else kept_pieces(_limits(limits), int(total or 0))

    def read(piece: int, start: int, size: int) -> bytes | None:
        # Empty only if the writer deleted the piece since the HMGET: asked-for ranges lie within the total.
        return client.getrange(keys.output_piece(job_id, piece), start, start + size - 1) or None

    return assemble_chunk(pieces, offset, limit, read)


def output_keys(keys: RedisKeys, job_id: str, limits: bytes | None, total: bytes | None) -> list[str]:
    """Every key of the job's output, given its `limits` and `total` fields (None: it has none)."""
    if limits is None:
        return [keys.output(job_id)]
    pieces = kept_pieces(_limits(limits), int(total or 0))
    return [keys.output(job_id), *(keys.output_piece(job_id, piece) for _, _, piece in pieces)]
