"""How the CLI prints answers: the design's plain `key: value` lines, a table for lists, or the API's JSON."""

from __future__ import annotations

import json
from typing import Any


def as_json(answer: dict[str, Any]) -> str:
    return json.dumps(answer, ensure_ascii=False, indent=2)


def job_lines(answer: dict[str, Any]) -> str:
    """`jobID: …` and `status: …`, as start and stop print them."""
    return f"jobID: {answer['jobID']}\nstatus: {answer['status']}"


def status_text(answer: dict[str, Any]) -> str:
    """The job lines with how it ended and its labels, then `output:` and the output, as status prints them;
    ends with a newline."""
    output = answer.get("output") or ""
    if output and not output.endswith("\n"):
        output += "\n"
    labels = [f"labels: {', '.join(answer['labels'])}"] if answer.get("labels") else []
    host = [f"host: {answer['host']}"] if answer.get("host") else []
    return "\n".join([outcome_lines(answer), *labels, *host, "output:", output])


def outcome_lines(answer: dict[str, Any]) -> str:
    """The job lines with how it ended (exit code, signal, reason), as wait prints them."""
    lines = [job_lines(answer)]
    if answer.get("exitCode") is not None:
        lines.append(f"exitCode: {answer['exitCode']}")
    if answer.get("signal"):
        lines.append(f"signal: {answer['signal']}")
    if answer.get("reason"):
        lines.append(f"reason: {answer['reason']}")
    return "\n".join(lines)


def job_table(jobs: list[dict[str, Any]]) -> str:
    rows = [("JOB ID", "STATUS", "EXIT", "CREATED", "LABELS", "COMMAND")]
    for job in jobs:
        exit_text = job["signal"] or ("" if job["exitCode"] is None else str(job["exitCode"]))
        labels = _printable(",".join(job.get("labels") or ())) or "-"
        rows.append((job["jobID"], job["status"], exit_text, job["createdAt"] or "", labels[:30],
                     _printable(" ".join(job["command"].split()))[:60]))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5]
                     for row in rows)


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else "?" for char in text)
