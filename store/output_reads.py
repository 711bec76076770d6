"""Answering a read of a job's kept output, the same way in every back end.

A back end keeps a job's output as pieces: the head from byte 0, then the tail segments it still has, each
named by the stream offset it starts at. Given those pieces and a way to read a range of one, `assemble_chunk`
makes the OutputChunk: the gap between the head and the first kept segment is reported as skipped and dropped,
and offsets count bytes of the whole stream, so a reader that asks again from `next_offset` never sees a byte
twice or misses a kept one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from workerctl.store.interface import OutputChunk, OutputPart

Piece = TypeVar("Piece")


def assemble_chunk(pieces: Sequence[tuple[int, int, Piece]], offset: int, limit: int | None,
                   read: Callable[[Piece, int, int], bytes | None]) -> OutputChunk:
    """The chunk from stream offset `offset`, at most `limit` bytes, of output kept as `pieces` (stream offset,
    size, piece; in stream order). `read(piece, start, size)` returns that range of the piece, or None if the
    writer has dropped the piece since it was listed (its bytes then count as skipped)."""
    total = pieces[-1][0] + pieces[-1][1] if pieces else 0
    dropped = sum(start - (prev_start + prev_size)
                  for (prev_start, prev_size, _), (start, _, _) in zip(pieces, pieces[1:]))
    budget = total if limit is None else limit
    parts = []
    skipped = 0
    position = offset
    for start, size, piece in pieces:
        if budget <= 0:
            break
        if position >= start + size:
            continue
        if position < start:  # the bytes before this piece were dropped
            skipped += start - position
            position = start
        data = read(piece, position - start, min(budget, start + size - position))
        if data is None:  # dropped by the writer since it was listed: its bytes are dropped now
            continue
        parts.append(OutputPart(skipped, data))
        skipped = 0
        position += len(data)
        budget -= len(data)
    if skipped:
        parts.append(OutputPart(skipped, b""))
    return OutputChunk(parts, position, total, dropped)
