"""The store's back ends side by side, so the store's unit tests run the same checks against each and the two
cannot drift: how to open each, and how to see what output each keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis_server import RedisServer
from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import JobRecord, OutputChunk, OutputSink
from workerctl.store.layout import DataLayout
from workerctl.store.local import LocalJobReader, LocalJobWriter, prepare
from workerctl.store.output_log import OutputLimits

BACKENDS = ["local", "redis"]


class LocalBackend:
    def __init__(self, root: Path) -> None:
        self.layout = DataLayout(root)
        prepare(self.layout)
        self.location: Path | str = root

    def kept_outputs(self) -> set[str]:
        """IDs of the jobs whose output is kept."""
        return set(os.listdir(self.layout.output_root))

    def pieces(self, job_id: str) -> int:
        """How many pieces (files, keys) hold the job's output."""
        return len(os.listdir(self.layout.output(job_id)))

    def writer(self, limits: OutputLimits) -> LocalJobWriter:
        return LocalJobWriter(self.layout, limits)

    def reader(self) -> LocalJobReader:
        return LocalJobReader(self.layout)


class RedisBackend:
    def __init__(self, server: RedisServer, location: str) -> None:
        from workerctl.store.redis_connection import RedisLocation

        self.server = server
        self.location = location
        self.prefix = RedisLocation.parse(location).prefix

    def kept_outputs(self) -> set[str]:
        with self.server.client() as client:
            return {key.decode().rpartition(":")[2] for key in client.keys(f"{self.prefix}:output:*")}

    def pieces(self, job_id: str) -> int:
        with self.server.client() as client:
            return len(client.keys(f"{self.prefix}:piece:*:{job_id}"))

    def writer(self, limits: OutputLimits):  # noqa: ANN201 - a RedisJobWriter
        from workerctl.store.redis_store import RedisJobWriter
        return RedisJobWriter(self.location, limits)

    def reader(self):  # noqa: ANN201 - a RedisJobReader
        from workerctl.store.redis_records import RedisJobReader
        return RedisJobReader(self.location)


def backend_for(request: pytest.FixtureRequest, root: Path) -> LocalBackend | RedisBackend:
    """The back end a test parametrized over BACKENDS asks for (a Redis one skips if redis-server is missing)."""
    if request.param == "local":
        return LocalBackend(root)
    return RedisBackend(request.getfixturevalue("redis_server"), request.getfixturevalue("redis_location"))


class Outputs:
    """Job outputs written and read through one back end's writer and reader, with limits of the test's choice."""

    def __init__(self, backend: LocalBackend | RedisBackend) -> None:
        self.backend = backend
        self._reader = backend.reader()
        self._writers: list = []

    def open(self, job_id: str, limits: OutputLimits) -> OutputSink:
        writer = self.backend.writer(limits)
        self._writers.append(writer)
        return writer.open_output(job_id)

    def reopen(self, job_id: str, limits: OutputLimits) -> OutputSink:
        """The job's output as a later run of the supervisor goes on with it (live restore), by a new writer
        whose limits (`limits`) may differ from those it was written with."""
        writer = self.backend.writer(limits)
        self._writers.append(writer)
        return writer.reopen_output(job_id)

    def read(self, job_id: str, offset: int = 0, limit: int | None = None, total: int | None = None) -> OutputChunk:
        """Read as the front end does; `total` given, as for a job that has ended with that much output."""
        status = JobStatus.RUNNING if total is None else JobStatus.FINISHED
        record = JobRecord(job_id, "alice", "true", status, 0.0, output_bytes=total or 0)
        return self._reader.read_output(record, offset, limit)

    def close(self) -> None:
        self._reader.close()
        for writer in self._writers:
            writer.close()
