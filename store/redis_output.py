"""A job's output in Redis, bounded exactly as the local back end bounds it on disk (output_log.py): the head
kept whole, then a rolling tail of segments, the oldest deleted as each new one starts.

    output:<job>      a hash: `limits` ("HEAD SEGMENT SEGMENTS": bytes, bytes, how many kept) and `total`
    piece:0:<job>     the head, bytes [0, HEAD) of the stream
    piece:<n>:<job>   tail segment n (from 1), bytes [HEAD + (n-1)·SEGMENT, HEAD + n·SEGMENT)

Each write is one MULTI/EXEC of its APPENDs, the deletion of the segment that fell out of the tail and the new
total, so a reader never sees a total without the bytes behind it. Which pieces are kept follows from the limits
and the total alone, so reading needs no listing: one HMGET, then a GETRANGE per piece read.
"""

from __future__ import annotations

import errno

import redis
from workerctl.store.interface import OutputChunk, OutputWriteError
from workerctl.store.output_log import OutputLimits
from workerctl.store.output_reads import assemble_chunk
from workerctl.store.redis_connection import RedisKeys, describe


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
    head, segment, segments = (int(number) for number in text.split())
    return OutputLimits(head, segment, segments)


class RedisOutputSink:
    """Appends one job's output to Redis within its limits (an OutputSink)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, where: str, job_id: str,
                 limits: OutputLimits) -> None:
        self.total = 0
        self._client = client
        self._keys = keys
        self._where = where
        self._job_id = job_id
        self._limits = limits
        self._piece = 0
        self._piece_end = limits.head_bytes
        try:
            created = client.hsetnx(keys.output(job_id), "limits",
                                    f"{limits.head_bytes} {limits.segment_bytes} {limits.tail_segments}")
        except redis.RedisError as error:
            raise self._error(error) from error
        if not created:
            raise OutputWriteError(errno.EEXIST, f"job {job_id} has output already")

    def write(self, data: bytes) -> None:
        if not data:
            return
        total, piece, piece_end = self.total, self._piece, self._piece_end
        transaction = self._client.pipeline(transaction=True)
        view = memoryview(data)
        while view:
            if total == piece_end:
                piece += 1
                piece_end = total + self._limits.segment_bytes
                if piece > self._limits.tail_segments:
                    transaction.delete(self._keys.output_piece(self._job_id, piece - self._limits.tail_segments))
            room = view[:piece_end - total]
            transaction.append(self._keys.output_piece(self._job_id, piece), room)
            total += len(room)
            view = view[len(room):]
        transaction.hset(self._keys.output(self._job_id), "total", total)
        try:
            transaction.execute()
        except redis.RedisError as error:
            raise self._error(error) from error
        self.total, self._piece, self._piece_end = total, piece, piece_end

    def close(self) -> None:
        """Nothing to release: every write is stored when `write` returns."""

    def _error(self, error: redis.RedisError) -> OutputWriteError:
        reason = describe(error, self._where)
        return OutputWriteError(errno.ENOSPC if "out of memory" in reason else errno.EIO, reason)


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
