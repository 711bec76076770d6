"""What the API shows of a job: its summary and details, with output held back at a cut character."""

from __future__ import annotations

import signal

import msgspec
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.limits import JobLimits
from workerctl.store.interface import JobRecord, OutputChunk, OutputPart
from workerctl.web.job_view import complete_utf8_length, detail, summary

EURO = "\u20ac".encode()


def record(status: JobStatus = JobStatus.RUNNING, **fields) -> JobRecord:
    return JobRecord("jaaaaaaaaaaaaaaaaaaaaaaaaaa", "alice", "echo hi", status, 1_700_000_000.25, **fields)


def test_a_character_cut_at_the_end_is_held_back():
    assert complete_utf8_length(b"ab" + EURO[:2]) == 2
    assert complete_utf8_length(b"ab" + EURO) == 5
    assert complete_utf8_length(b"ab\xff") == 3  # invalid, not incomplete: shown as U+FFFD
    assert complete_utf8_length(b"") == 0


def test_the_summary_names_the_signal_and_shows_times_in_utc():
    shown = msgspec.json.decode(msgspec.json.encode(summary(record(JobStatus.STOPPED, signal=signal.SIGTERM, ended_at=1_700_000_001.5))))
    assert shown == {"jobID": "jaaaaaaaaaaaaaaaaaaaaaaaaaa", "status": "stopped", "command": "echo hi",
                     "exitCode": None, "signal": "SIGTERM", "reason": None, "createdAt": "2023-11-14T22:13:20.250Z",
                     "startedAt": None, "endedAt": "2023-11-14T22:13:21.500Z", "limits": None, "usage": None,
                     "labels": [], "host": None}


def test_limits_and_usage_are_shown_where_recorded():
    shown = msgspec.json.decode(msgspec.json.encode(summary(record(JobStatus.RUNNING, limits=JobLimits(30.0, 2**28, 0.5, 64), cpu_seconds=1.25,
                                   peak_memory_bytes=2**20))))
    assert shown["limits"] == {"timeoutSeconds": 30.0, "memoryBytes": 2**28, "cpus": 0.5, "processes": 64}
    assert shown["usage"] == {"cpuSeconds": 1.25, "peakMemoryBytes": 2**20}


def test_while_a_job_runs_a_cut_character_waits_for_the_next_read():
    chunk = OutputChunk([OutputPart(0, b"price " + EURO[:1])], next_offset=7, total=7, dropped=0)
    shown = detail(record(JobStatus.RUNNING), chunk)
    assert (shown.output, shown.next_offset, shown.output_bytes) == ("price ", 6, 7)


def test_once_a_job_has_ended_its_last_bytes_are_shown_as_they_are():
    chunk = OutputChunk([OutputPart(0, b"price " + EURO[:1])], next_offset=7, total=7, dropped=0)
    shown = detail(record(JobStatus.FINISHED, exit_code=0), chunk)
    assert (shown.output, shown.next_offset) == ("price \ufffd", 7)


def test_dropped_output_is_marked_on_a_line_of_its_own():
    chunk = OutputChunk([OutputPart(0, b"head"), OutputPart(90, b"tail\n")], next_offset=99, total=99, dropped=90)
    shown = detail(record(JobStatus.FINISHED, exit_code=0), chunk)
    assert shown.output == "head\n[workerctl: 90 bytes of output dropped here]\ntail\n"
    assert shown.output_dropped == 90
