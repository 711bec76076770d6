"""What the API shows of a job: its record and its output as the protocol's replies.

Output is stored as bytes and shown as text: invalid UTF-8 becomes U+FFFD. While more output may follow, a
character cut in half at the end of what was read is held back for the next read, so a poller that follows
`nextOffset` sees every character whole and every byte exactly once.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any

from workerctl.protocol.jobs import signal_name
from workerctl.protocol.replies import JobDetail, JobSummary, JobUsage
from workerctl.store.interface import JobRecord, OutputChunk


def dropped_marker(skipped: int) -> str:
    return f"[workerctl: {skipped} bytes of output dropped here]\n"


@functools.lru_cache(maxsize=4096)  # the same few timestamps are shown again and again to pollers
def timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _summary_fields(record: JobRecord) -> dict[str, Any]:
    return {
        "job_id": record.id,
        "status": record.status,
        "command": record.command,
        "exit_code": record.exit_code,
        "signal": signal_name(record.signal) if record.signal is not None else None,
        "reason": record.reason,
        "created_at": timestamp(record.created_at),
        "started_at": timestamp(record.started_at),
        "ended_at": timestamp(record.ended_at),
        "limits": record.limits,
        "usage": None if record.cpu_seconds is None and record.peak_memory_bytes is None else JobUsage(
            record.cpu_seconds, record.peak_memory_bytes),
        "labels": record.labels,
        "host": record.host,
    }


def summary(record: JobRecord) -> JobSummary:
    """The job without its output (what `list` shows)."""
    return JobSummary(**_summary_fields(record))


def complete_utf8_length(data: bytes) -> int:
    """The length of `data` without a multi-byte character cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the last character's first byte
            needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return len(data) - back if needed > back else len(data)
    return len(data)


def detail(record: JobRecord, chunk: OutputChunk) -> JobDetail:
    """The job with the output in `chunk` (what `status` shows)."""
    more_may_follow = not record.status.is_final or chunk.next_offset < chunk.total
    pieces: list[str] = []
    next_offset = chunk.next_offset
    for index, part in enumerate(chunk.parts):
        if part.skipped:
            if pieces and not pieces[-1].endswith("\n"):
                pieces.append("\n")
            pieces.append(dropped_marker(part.skipped))
        data = part.data
        if more_may_follow and index == len(chunk.parts) - 1:
            kept = complete_utf8_length(data)
            next_offset -= len(data) - kept
            data = data[:kept]
        pieces.append(data.decode("utf-8", "replace"))
    return JobDetail(**_summary_fields(record), env=record.env, output="".join(pieces), output_bytes=chunk.total,
                     output_dropped=chunk.dropped, next_offset=next_offset)
