"""Job records in SQLite (WAL mode), for the local back end: the supervisor writes, the front end reads.

One row per job. The supervisor is the only writer and batches its writes into one transaction per turn of its
event loop; it answers a request only after the transaction that records it is committed, so an answered start
is never lost to a crash. WAL lets the front end read while the supervisor writes. `synchronous=NORMAL`
survives any process crash; only a power cut can lose the last moments of writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from workerctl.protocol.jobs import FINAL_STATUSES, JobStatus, stored_before
from workerctl.store.interface import (
    LIMIT_COLUMNS,
    JobRecord,
    StoreError,
    limit_columns,
    limits_from_columns,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    reason TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    idempotency_key TEXT,
    output_bytes INTEGER NOT NULL DEFAULT 0,
    timeout_seconds REAL,
    memory_bytes INTEGER,
    cpus REAL,
    processes INTEGER,
    cpu_seconds REAL,
    peak_memory_bytes INTEGER,
    env TEXT,
    labels TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""

# Columns added since the first version, and their types: a data directory of an earlier version gains them.
_ADDED_COLUMNS = {"timeout_seconds": "REAL", "memory_bytes": "INTEGER", "cpus": "REAL", "processes": "INTEGER",
                  "cpu_seconds": "REAL", "peak_memory_bytes": "INTEGER", "env": "TEXT", "labels": "TEXT"}
_JSON_COLUMNS = {"env": dict, "labels": tuple}  # kept as JSON text
_FIELDS = [field.name for field in fields(JobRecord) if field.name not in ("host", "limits")]  # one host: no host
_COLUMNS = [*_FIELDS, *LIMIT_COLUMNS]
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
_INSERT = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join(f':{name}' for name in _COLUMNS)})"
# A save checks the move against the stored status, as the Redis back end's does: never from a final one.
_UPDATE = {status: f"UPDATE jobs SET {', '.join(f'{name} = :{name}' for name in _COLUMNS if name != 'id')} "
                   f"WHERE id = :id AND status IN ({', '.join(repr(str(old)) for old in stored_before(status))})"
           for status in JobStatus}
_FINAL = tuple(FINAL_STATUSES)


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = dict(zip(_COLUMNS, row))
    values["status"] = JobStatus(values["status"])
    for name, kind in _JSON_COLUMNS.items():
        text = values[name]
        values[name] = kind(json.loads(text)) if text else kind()
    return JobRecord(**{name: values[name] for name in _FIELDS}, limits=limits_from_columns(values))


def _values(record: JobRecord) -> dict[str, Any]:
    values = {**{name: getattr(record, name) for name in _FIELDS}, **limit_columns(record.limits)}
    for name in _JSON_COLUMNS:
        values[name] = json.dumps(values[name], ensure_ascii=False) if values[name] else None
    return values


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 5000")
    return connection


@contextmanager
def _storing(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise StoreError(f"cannot {what}: {error}") from error


class _Queries:
    """The reads both sides make."""

    _db: sqlite3.Connection

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        """The job, if it exists and belongs to `owner`; another user's job is the same as no job."""
        row = self._db.execute(f"{_SELECT} WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        return _record(row) if row else None


class RecordWriter(_Queries):
    """The supervisor's handle on the records: every write goes into the open batch until `commit`."""

    def __init__(self, path: Path) -> None:
        with _storing(f"open the job records {path}"):
            self._db = _connect(path)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        path.chmod(0o600)

    def _write(self, sql: str, parameters: tuple[Any, ...] | dict[str, Any]) -> sqlite3.Cursor:
        with _storing("record the job"):
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            return self._db.execute(sql, parameters)

    def commit(self) -> None:
        if self._db.in_transaction:
            with _storing("record the jobs"):
                self._db.execute("COMMIT")

    def rollback(self) -> None:
        """Drop the batch, if a failed commit left it open."""
        if self._db.in_transaction:
            with _storing("roll back"):
                self._db.execute("ROLLBACK")

    def insert(self, record: JobRecord) -> None:
        self._write(_INSERT, _values(record))

    def save(self, record: JobRecord) -> None:
        """Write every field of the record, unless the stored status may not move to its status (a bug: this is
        the host's only writer), which is logged."""
        if self._write(_UPDATE[record.status], _values(record)).rowcount == 0:
            log.error("job %s: not recorded as %s: its stored record is gone or its status cannot move to that",
                      record.id, record.status.value)

    def find_by_key(self, owner: str, key: str) -> JobRecord | None:
        row = self._db.execute(f"{_SELECT} WHERE owner = ? AND idempotency_key = ?", (owner, key)).fetchone()
        return _record(row) if row else None

    def unsettled(self) -> list[JobRecord]:
        rows = self._db.execute(f"{_SELECT} WHERE status IN (?, ?) ORDER BY seq",
                                (JobStatus.CREATED, JobStatus.RUNNING)).fetchall()
        return [_record(row) for row in rows]

    def expired(self, older_than: float, keep_per_owner: int) -> list[str]:
        """IDs of final jobs that ended before `older_than`, or that fall beyond the newest `keep_per_owner`
        final jobs of their owner."""
        rows = self._db.execute(
            f"""SELECT id FROM (
                    SELECT id, ended_at,
                           ROW_NUMBER() OVER (PARTITION BY owner ORDER BY seq DESC) AS newness
                    FROM jobs WHERE status IN ({', '.join('?' * len(_FINAL))}))
                WHERE ended_at < ? OR newness > ?""",
            (*_FINAL, older_than, keep_per_owner)).fetchall()
        return [row[0] for row in rows]

    def delete(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._write("DELETE FROM jobs WHERE id = ?", (job_id,))

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()


class RecordReader(_Queries):
    """The front end's read-only view of the records."""

    def __init__(self, path: Path) -> None:
        with _storing(f"open the job records {path}"):
            self._db = _connect(path)
            self._db.execute("PRAGMA query_only = ON")

    def list(self, owner: str, status: JobStatus | None, limit: int, label: str | None = None) -> list[JobRecord]:
        conditions, parameters = ["owner = ?"], [owner]
        if status is not None:
            conditions.append("status = ?")
            parameters.append(status)
        if label is not None:
            conditions.append("EXISTS (SELECT 1 FROM json_each(jobs.labels) WHERE value = ?)")
            parameters.append(label)
        rows = self._db.execute(f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY seq DESC LIMIT ?",
                                (*parameters, limit))
        return [_record(row) for row in rows.fetchall()]

    def close(self) -> None:
        self._db.close()
