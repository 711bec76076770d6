"""A cluster front end's JobLink: what SupervisorLink is to a single host's front end, over Celery and Redis. The
cluster's launcher (server/cluster_serve.py) opens it and hands it to the front end, which never imports this
package, Redis or Celery itself.

A start goes to the queue of the host with the most free slots (or of the host it names, or to the shared queue
when every host is full) and is answered with the reply of that host's supervisor; a stop goes to the queue of
the job's host. Change events come from the agents over Redis pub/sub and wake long polls and followers, which
also re-read their job every second in case an event was missed. Every second the link checks Redis; while
Redis cannot be reached the link is down and every request is answered 503 at once. Lost hosts are the agents'
to sweep (sweep.py): a front end only reads, places and forwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from workerctl.cluster.celery_app import START_TASK, STOP_TASK, celery_app
from workerctl.cluster.hosts import Cluster
from workerctl.protocol.actions import StartRequest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import JobStatus
from workerctl.protocol.messages import JobReply, MalformedMessage, Refusal, StartJob, StopJob, decode, encode
from workerctl.protocol.replies import JobRef
from workerctl.store.interface import JobReader, StoreError
from workerctl.store.redis_connection import storing
from workerctl.web.job_link import JobWatchers, job_ref, start_job

log = logging.getLogger(__name__)

_CHECK_SECONDS = 1.0  # how often Redis is checked and waiters woken without an event
_STOP_MARGIN_SECONDS = 10.0  # past the host's --kill-grace, for a stop's answer
_READER_THREADS = 16

T = TypeVar("T")
_STORE_DOWN = "the cluster's job store (Redis) cannot be reached right now; try again in a moment"


class ClusterLink:
    """The JobLink of a front end of the cluster whose Redis is at `location`, reading jobs with `reader`."""

    def __init__(self, location: str, reader: JobReader) -> None:
        self.cluster = Cluster(location)
        self.celery = celery_app(self.cluster.location)
        self.watchers = JobWatchers()
        self.up = asyncio.Event()  # set while Redis answers
        self.jobs = reader
        # Reads have threads of their own: a Redis that hangs holds them, not the checks that find it down.
        self._readers = ThreadPoolExecutor(_READER_THREADS, thread_name_prefix="reads")
        self._checked = asyncio.Event()  # set once Redis has been checked, whether it answered or not

    async def ready(self) -> None:
        """Return once requests can be answered: with 503 while Redis is down, so after its first check."""
        await self._checked.wait()

    async def ensure_up(self) -> None:
        if not self.up.is_set():
            raise ApiError(ErrorKind.UNAVAILABLE, _STORE_DOWN)

    async def read(self, call: Callable[[], T]) -> T:
        """A read of the shared store, off the event loop (a Redis that hangs must not hold every connection);
        503 at once while Redis is known to be down, or if the read fails."""
        await self.ensure_up()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, call)
        except StoreError as error:
            raise ApiError(ErrorKind.UNAVAILABLE, str(error)) from None

    async def start(self, user: str, request: StartRequest, timeout: float) -> JobRef:
        await self.ensure_up()
        message = start_job(user, request)
        if request.host is not None:
            if request.host not in await self._blocking(self.cluster.live_hosts):
                raise ApiError(ErrorKind.BAD_REQUEST, f"no host {request.host} is in the cluster now")
            queue = self.cluster.keys.host_queue(request.host)
        else:
            queue = (await self._blocking(self.cluster.place))[0]
        return await self._send(START_TASK, message, queue, timeout)

    async def stop(self, user: str, job_id: str, timeout: float) -> JobRef:
        """A job waiting (created) is stopped here, in the store, without its host, which may be gone: it never
        starts after. A running one is stopped by its host; if the job ends meanwhile another way (its host
        lost, say), that is the answer."""
        await self.ensure_up()
        record = await self.read(lambda: self.jobs.get(job_id, user))
        while record is not None and record.status is JobStatus.CREATED and record.host is not None:
            waiting = record
            if await self._blocking(lambda: self.cluster.stop_waiting(waiting)) is not None:
                return JobRef(record.id, JobStatus.STOPPED)
            record = await self.read(lambda: self.jobs.get(job_id, user))  # started or taken over meanwhile
        if record is None:
            raise ApiError(ErrorKind.NOT_FOUND, "no such job")
        if record.status.is_final or record.host is None:
            return JobRef(record.id, record.status)
        host = record.host
        lease = await self._blocking(lambda: self.cluster.lease(host))
        if lease is not None:  # its host ends a job within its own --kill-grace, which may be longer than ours
            timeout = max(timeout, lease["killGrace"] + _STOP_MARGIN_SECONDS)

        def ended() -> JobRef | None:
            now = self.jobs.get(job_id, user)
            return JobRef(now.id, now.status) if now is not None and now.status.is_final else None

        return await self._send(STOP_TASK, StopJob(0, user, job_id), self.cluster.keys.host_queue(host), timeout,
                                ended)

    async def _send(self, task: str, message: StartJob | StopJob, queue: str, timeout: float,
                    settled: Callable[[], JobRef | None] = lambda: None) -> JobRef:
        """Send the request to `queue` and return its host's reply; or, while waiting for it, what `settled`
        finds (checked every second)."""
        def send_and_wait() -> JobRef:
            # Expires when this front end stops waiting: a start answered 503 must never run later.
            result = self.celery.send_task(task, args=[encode(message).decode()], queue=queue, expires=timeout)
            from celery.exceptions import TimeoutError as NoResultYet
            deadline = time.monotonic() + timeout
            while True:
                try:
                    # Not forgotten after: a delete synced to Redis's disk before each answer; results expire.
                    return _job_ref(str(result.get(timeout=min(_CHECK_SECONDS, timeout), propagate=True)))
                except NoResultYet:
                    answer = settled()
                    if answer is not None:
                        return answer
                    if time.monotonic() >= deadline:
                        raise TimeoutError from None

        try:
            return await self._blocking(send_and_wait)
        except TimeoutError:
            raise ApiError(ErrorKind.UNAVAILABLE, "no host of the cluster answered in time; check with status or "
                                                  "list whether the request took effect") from None

    async def unready(self) -> str | None:
        if not self.up.is_set():
            return _STORE_DOWN
        try:
            hosts = await self._blocking(self.cluster.live_hosts)
        except ApiError as error:
            return error.message
        return None if hosts else "no agent holds a lease: no host of the cluster can run jobs"

    async def _blocking(self, call: Callable[[], Any]) -> Any:
        """Run a blocking Redis or Celery call off the event loop; 503 if Redis cannot be reached."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, call)
        except StoreError as error:
            raise ApiError(ErrorKind.UNAVAILABLE, str(error)) from None
        except Exception as error:  # Celery's and kombu's own connection errors
            if isinstance(error, (TimeoutError, ApiError)):
                raise
            log.warning("the cluster cannot be reached: %s", error)
            raise ApiError(ErrorKind.UNAVAILABLE, _STORE_DOWN) from None

    async def maintain(self) -> None:
        """Follow the agents' change events and check Redis, for as long as the front end runs."""
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._follow_changes, args=(loop,), name="changes", daemon=True).start()
        while True:
            try:
                await loop.run_in_executor(None, self._ping)
                if not self.up.is_set():
                    log.info("the cluster's Redis answers")
                self.up.set()
            except StoreError as error:
                if self.up.is_set() or not self._checked.is_set():
                    log.warning("%s; answering 503 until it can", error)
                self.up.clear()
            self._checked.set()
            self.watchers.notify_all()
            await asyncio.sleep(_CHECK_SECONDS)

    def _ping(self) -> None:
        with storing("reach the cluster's Redis", self.cluster.location.where):
            self.cluster.client.ping()

    def _follow_changes(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                with self.cluster.client.pubsub(ignore_subscribe_messages=True) as subscription:
                    subscription.subscribe(self.cluster.keys.changed)
                    while True:
                        event = subscription.get_message(timeout=_CHECK_SECONDS)
                        if event is not None and event["type"] == "message":
                            job_ids = json.loads(event["data"])
                            loop.call_soon_threadsafe(self.watchers.notify, job_ids)
            except (redis.RedisError, ValueError) as error:
                log.debug("change events interrupted: %s", error)
                threading.Event().wait(_CHECK_SECONDS)


def _job_ref(text: str) -> JobRef:
    """The job a host's reply names; its refusal as an ApiError."""
    try:
        reply = decode(text.encode())
    except MalformedMessage:
        reply = None
    if not isinstance(reply, JobReply | Refusal):
        raise ApiError(ErrorKind.UNAVAILABLE, "a host of the cluster answered something else")
    return job_ref(reply)
