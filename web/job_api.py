"""The API's actions for an authenticated user.

Start and stop go to the supervisor over the link. Status, list and logs read what the supervisor has
recorded, without a round trip; long polls and log followers wait for the supervisor's change events.
Every lookup is by job ID *and* owner, so another user's job answers exactly like a job that does not exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from workerctl.protocol import MAX_ANSWER_OUTPUT_BYTES, NotFound, StartJob, StopJob, is_job_id
from workerctl.store.output_log import read_output
from workerctl.store.records import JobRecord, RecordReader
from workerctl.web.job_view import dropped_marker, job_view, record_view
from workerctl.web.requests import ListRequest, LogsRequest, StartRequest, StatusRequest, StopRequest
from workerctl.web.supervisor_link import SupervisorLink, changed_within

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_MARGIN_SECONDS = 10.0
_STREAM_CHUNK_BYTES = 256 * 1024
_FOLLOW_RECHECK_SECONDS = 15.0  # a follower re-reads the job this often even without events

Send = Callable[[bytes], Awaitable[None]]


class JobApi:
    def __init__(self, link: SupervisorLink, records: RecordReader, output_root: Path, kill_grace: float) -> None:
        self.link = link
        self.records = records
        self.output_root = output_root
        self.stop_timeout = kill_grace + _STOP_TIMEOUT_MARGIN_SECONDS

    async def start(self, user: str, request: StartRequest) -> dict[str, Any]:
        return await self.link.request(StartJob(user, request.command, request.idempotency_key),
                                       _START_TIMEOUT_SECONDS)

    async def stop(self, user: str, request: StopRequest) -> dict[str, Any]:
        return await self.link.request(StopJob(user, request.job_id), self.stop_timeout)

    def list(self, user: str, request: ListRequest) -> dict[str, Any]:
        self.link.ensure_up()
        return {"jobs": [record_view(record) for record in self.records.list(user, request.status, request.limit)]}

    async def status(self, user: str, request: StatusRequest) -> dict[str, Any]:
        """The job and its output from `offset`; with `wait`, first wait for new output or a new status."""
        self.link.ensure_up()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait
        first_status = None
        while True:
            with self.link.watchers.watching(request.job_id) as changed:
                record = self._record(user, request.job_id)
                chunk = read_output(self.output_root / record.id, request.offset, MAX_ANSWER_OUTPUT_BYTES,
                                    record.output_bytes if record.status.is_final else None)
                first_status = first_status or record.status
                remaining = deadline - loop.time()
                if chunk.next_offset != request.offset or record.status is not first_status \
                        or record.status.is_final or remaining <= 0:
                    return job_view(record, chunk)
                await changed_within(changed, remaining)

    async def stream_logs(self, user: str, request: LogsRequest, send: Send,
                          client_gone: Callable[[], bool]) -> None:
        """Send the job's output from `offset` as it is; with `follow`, keep sending until the job is final
        or the client goes away."""
        self.link.ensure_up()
        offset = request.offset
        while not client_gone():
            with self.link.watchers.watching(request.job_id) as changed:
                record = self._record(user, request.job_id)
                chunk = read_output(self.output_root / record.id, offset, _STREAM_CHUNK_BYTES)
                for part in chunk.parts:
                    if part.skipped:
                        await send(dropped_marker(part.skipped).encode())
                    if part.data:
                        await send(part.data)
                if chunk.next_offset != offset:
                    offset = chunk.next_offset
                    continue
                # The supervisor records a job final only after storing all its output: nothing more comes.
                if not request.follow or record.status.is_final:
                    return
                await changed_within(changed, _FOLLOW_RECHECK_SECONDS)

    def _record(self, user: str, job_id: str) -> JobRecord:
        record = self.records.get(job_id, user) if is_job_id(job_id) else None
        if record is None:
            raise NotFound("no such job")
        return record
