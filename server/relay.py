"""An agent's relay process: a Celery worker that takes start and stop requests from the agent's own queue and the
shared one, hands each to the local supervisor over the link (as the single host's front end does), and returns
the supervisor's reply as the task's result. Beside it, it renews the host's lease, publishes the
supervisor's change events on Redis for the front ends, and after each renewal has the supervisor fence the
host (FenceJobs): a job whose record the lost-host sweep settled while the lease had lapsed is ended at once.

The Celery worker runs a pool of threads (a task is a round trip to the supervisor, never the job itself), each
taking one message at a time.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from multiprocessing.connection import Client, Connection
from pathlib import Path

import msgspec
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.messages import (
    AdoptJob,
    FenceJobs,
    JobReply,
    JobsChanged,
    MalformedMessage,
    Refusal,
    StartJob,
    StopJob,
    SupervisorClosing,
    decode,
    encode,
)
from workerctl.server.celery_connection import quiet_reconnects
from workerctl.server.cluster import (
    ADOPT_TASK,
    LEASE_RENEWAL_SECONDS,
    START_TASK,
    STOP_TASK,
    Cluster,
    ClusterKeys,
    celery_app,
)
from workerctl.server.link import read_available, tune_link_socket
from workerctl.server.linux import die_with_parent
from workerctl.server.logs import configure_logging
from workerctl.server.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.store.interface import StoreError

log = logging.getLogger(__name__)

_RECONNECT_SECONDS = 0.1
_SEND_TIMEOUT_SECONDS = 2.0
_ANSWER_SECONDS = 30.0  # a stop waits for the kill's grace; the front end gives up sooner anyway
_THREADS = 16


class RelayLink:
    """A blocking client of the supervisor's link: requests from the worker's thread, replies and change events
    read by a thread of its own, which reconnects whenever the supervisor restarts."""

    def __init__(self, address: Path, authkey: bytes, on_changed: callable) -> None:  # type: ignore[valid-type]
        self.address = address
        self.authkey = authkey
        self.on_changed = on_changed
        self._connection: Connection | None = None
        self._connected = threading.Event()
        self._send_lock = threading.Lock()
        self._pending: dict[int, queue.SimpleQueue[JobReply | Refusal | None]] = {}
        self._ids = itertools.count(1)
        threading.Thread(target=self._read_forever, name="relay-link", daemon=True).start()

    def request(self, message: StartJob | StopJob | AdoptJob) -> JobReply | Refusal:
        if not self._connected.wait(_ANSWER_SECONDS):
            return Refusal(0, ErrorKind.UNAVAILABLE, "the host's supervisor is not available right now")
        request_id = next(self._ids)
        answer: queue.SimpleQueue[JobReply | Refusal | None] = queue.SimpleQueue()
        self._pending[request_id] = answer
        try:
            with self._send_lock:
                assert self._connection is not None
                self._connection.send_bytes(encode(msgspec.structs.replace(message, request_id=request_id)))
            reply = answer.get(timeout=_ANSWER_SECONDS)
        except (OSError, AssertionError, queue.Empty):
            reply = None
        finally:
            self._pending.pop(request_id, None)
        if reply is None:
            return Refusal(request_id, ErrorKind.UNAVAILABLE, "the host's supervisor stopped while handling the "
                                                              "request; check with status whether it took effect")
        return reply

    def notify(self, message: FenceJobs) -> None:
        """Send a message that is not answered, if the supervisor is connected; else it is dropped."""
        try:
            with self._send_lock:
                if self._connection is not None:
                    self._connection.send_bytes(encode(message))
        except OSError as error:
            log.warning("cannot tell the supervisor to fence the host: %s", error)

    def _read_forever(self) -> None:
        while True:
            try:
                connection = Client(str(self.address), family="AF_UNIX", authkey=self.authkey)
            except (OSError, EOFError):
                time.sleep(_RECONNECT_SECONDS)
                continue
            tune_link_socket(connection, _SEND_TIMEOUT_SECONDS)
            self._connection = connection
            self._connected.set()
            log.info("connected to the supervisor")
            try:
                while True:
                    connection.poll(None)
                    for message in read_available(connection):
                        match message:
                            case JobsChanged():
                                self.on_changed(list(message.job_ids))
                            case JobReply() | Refusal():
                                waiting = self._pending.get(message.request_id)
                                if waiting is not None:
                                    waiting.put(message)
                            case SupervisorClosing():
                                pass
            except (EOFError, OSError, MalformedMessage) as error:
                log.warning("lost the supervisor (%s)", str(error) or type(error).__name__)
            self._connected.clear()
            self._connection = None
            connection.close()
            for waiting in list(self._pending.values()):
                waiting.put(None)


def run_relay(settings: ServerSettings, holder: str, link_address: Path, authkey: bytes, parent_pid: int) -> None:
    """Run the agent's Celery worker until SIGTERM, renewing the host's lease for `holder`, the agent's run."""
    configure_logging(settings.log_level)
    die_with_parent(parent_pid)
    assert settings.cluster is not None and settings.name is not None
    cluster = Cluster(settings.cluster)
    link = RelayLink(link_address, authkey, cluster.publish_changed)
    stopping, stood_down = threading.Event(), threading.Event()
    renewing = threading.Thread(target=_renew_lease, args=(cluster, settings, holder, link, stopping, stood_down),
                                name="lease", daemon=True)
    renewing.start()
    app = celery_app(cluster.location)

    def relay(payload: str) -> str:
        try:
            message = decode(payload.encode())
        except MalformedMessage as error:
            return encode(Refusal.of(0, ApiError(ErrorKind.BAD_REQUEST, str(error)))).decode()
        if not isinstance(message, (StartJob, StopJob, AdoptJob)):
            return encode(Refusal(0, ErrorKind.BAD_REQUEST, "not a request")).decode()
        return encode(link.request(message)).decode()

    app.task(name=START_TASK)(relay)
    app.task(name=STOP_TASK)(relay)
    app.task(name=ADOPT_TASK, ignore_result=True)(relay)
    keys = ClusterKeys(cluster.location.prefix)
    quiet_reconnects()
    # Celery warns of running as root for its pickle serializer, which is not accepted here (JSON only).
    warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges")
    # Threads, each one request at a time: a stop holds its thread until the job's processes are gone (up to
    # --kill-grace), and must not hold up the host's other requests.
    worker = app.Worker(pool="threads", concurrency=_THREADS, prefetch_multiplier=1,
                        hostname=f"{settings.name}@workerctl",
                        queues=[keys.host_queue(settings.name), keys.shared_queue], without_gossip=True,
                        without_mingle=True, without_heartbeat=True, loglevel=settings.log_level, quiet=True)
    worker.start()  # returns at SIGTERM: the agent's, once the supervisor has ended its jobs, or _stand_down's
    stopping.set()
    renewing.join()
    try:  # so that no start waits for this host until its lease would lapse
        cluster.give_up_lease(settings.name, holder)
    except StoreError as error:
        log.warning("%s", error)
    if stood_down.is_set():
        sys.exit(UNUSABLE_SETTINGS_EXIT)  # the agent stops: restarting it is useless while the other runs


def _renew_lease(cluster: Cluster, settings: ServerSettings, holder: str, link: RelayLink,
                 stopping: threading.Event, stood_down: threading.Event) -> None:
    """Renew the host's lease every LEASE_RENEWAL_SECONDS (sooner with a short --host-timeout) until `stopping`
    is set, and after each renewal have the supervisor end the jobs no longer its own. After every renewal, not
    only one that finds the lease lapsed: a sweep that read the lease as lapsed just before it was renewed
    settles the jobs after. If another agent holds the lease (it took the name while this one's lease had
    lapsed), stand down: `stood_down` is set and the relay stops, and with it the agent."""
    assert settings.name is not None
    every = min(LEASE_RENEWAL_SECONDS, settings.host_timeout / 4)
    renewed_before = failing = False
    while not stopping.is_set():
        try:
            held_by = cluster.renew_lease(settings.name, holder, settings.max_jobs, settings.kill_grace,
                                          settings.host_timeout)
        except StoreError as error:
            if not failing:
                log.warning("%s; trying again every %g s", error, every)
            failing = True
        else:
            if failing:
                log.info("renewed the host's lease again")
            if renewed_before and held_by is None:
                log.warning("the host's lease had lapsed: its unfinished jobs may have been settled as lost, and "
                            "those are ended here")
            if held_by not in (None, holder):
                log.critical("another agent holds the lease of host %s (each agent needs a --name of its own): "
                             "stopping this one", settings.name)
                stood_down.set()
                os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
                return
            renewed_before, failing = True, False
            link.notify(FenceJobs())
        stopping.wait(every)
