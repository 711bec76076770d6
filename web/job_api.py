"""The API's actions for an authenticated user, one handler per action of the protocol's table.

Start and stop go to the supervisor over the link. Status, list and logs read the store, without a round trip;
long polls and log followers wait for the supervisor's change events. A job that has not ended is shown only
while the supervisor is connected (without it, its record may be stale); an ended job is shown at any time.
Every lookup is by job ID *and* owner, so another user's job answers exactly like a job that does not exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from workerctl.protocol.actions import (
    ACTIONS,
    ListRequest,
    LogsRequest,
    Request,
    StartRequest,
    StatusRequest,
    StopRequest,
)
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import MAX_ANSWER_OUTPUT_BYTES, is_job_id
from workerctl.protocol.replies import JobDetail, JobList, JobRef
from workerctl.store.interface import JobReader, JobRecord, OutputChunk
from workerctl.web.job_link import JobLink, changed_within
from workerctl.web.job_view import detail, dropped_marker, summary

_STOP_TIMEOUT_MARGIN_SECONDS = 10.0
_STREAM_CHUNK_BYTES = 256 * 1024
_FOLLOW_RECHECK_SECONDS = 15.0  # a follower re-reads the job this often even without events

Send = Callable[[bytes], Awaitable[None]]


class JobApi:
    def __init__(self, link: JobLink, jobs: JobReader, kill_grace: float, start_wait: float) -> None:
        self.link = link
        self.jobs = jobs
        self.start_wait = start_wait
        self.stop_timeout = kill_grace + _STOP_TIMEOUT_MARGIN_SECONDS
        # Actions answered with one JSON reply, and actions answered with a stream of text.
        self.answers: dict[type[Any], Callable[[str, Any], Awaitable[Any]]] = {
            StartRequest: self.start, StopRequest: self.stop, StatusRequest: self.status, ListRequest: self.list,
        }
        self.streams = {LogsRequest: self.stream_logs}
        unhandled = set(ACTIONS.values()) - self.answers.keys() - self.streams.keys()
        if unhandled:
            raise TypeError(f"no handler for {', '.join(sorted(cls.__name__ for cls in unhandled))}")

    async def answer(self, user: str, request: Request) -> Any:
        """The reply to a JSON action."""
        return await self.answers[type(request)](user, request)

    async def start(self, user: str, request: StartRequest) -> JobRef:
        return await self.link.start(user, request, self.start_wait)

    async def stop(self, user: str, request: StopRequest) -> JobRef:
        return await self.link.stop(user, request.job_id, self.stop_timeout)

    async def list(self, user: str, request: ListRequest) -> JobList:
        await self.link.ensure_up()
        records = await self.link.read(lambda: self.jobs.list(user, request.status, request.limit, request.label))
        return JobList(tuple(summary(record) for record in records))

    async def status(self, user: str, request: StatusRequest) -> JobDetail:
        """The job and its output from `offset`; with `wait`, first wait for new output or a new status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait
        first_status = None
        while True:
            with self.link.watchers.watching(request.job_id) as changed:
                record, chunk = await self._job_output(user, request.job_id, request.offset, MAX_ANSWER_OUTPUT_BYTES)
                first_status = first_status or record.status
                remaining = deadline - loop.time()
                if chunk.next_offset != request.offset or record.status is not first_status \
                        or record.status.is_final or remaining <= 0:
                    return detail(record, chunk)
                await changed_within(changed, remaining)

    async def stream_logs(self, user: str, request: LogsRequest, send: Send,
                          client_gone: Callable[[], bool]) -> None:
        """Send the job's output from `offset` as it is; with `follow`, keep sending until the job is final
        or the client goes away."""
        offset = request.offset
        while not client_gone():
            with self.link.watchers.watching(request.job_id) as changed:
                record, chunk = await self._job_output(user, request.job_id, offset, _STREAM_CHUNK_BYTES)
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

    async def _job_output(self, user: str, job_id: str, offset: int, limit: int) -> tuple[JobRecord, OutputChunk]:
        """The user's job and its output from `offset`, read together (one trip off the event loop where the
        store's reads leave it); while the job has not ended, read once the supervisor is connected (without
        it the record may be stale: a new supervisor settles what a dead one left)."""
        def read() -> tuple[JobRecord | None, OutputChunk | None]:
            record = self.jobs.get(job_id, user) if is_job_id(job_id) else None
            return record, (self.jobs.read_output(record, offset, limit) if record is not None else None)

        record, chunk = await self.link.read(read)
        if record is None or chunk is None:
            raise ApiError(ErrorKind.NOT_FOUND, "no such job")
        if not record.status.is_final and not self.link.up.is_set():
            await self.link.ensure_up()
            return await self._job_output(user, job_id, offset, limit)
        return record, chunk
