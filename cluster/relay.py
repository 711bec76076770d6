"""An agent's relay process: a Celery worker that takes start and stop requests from the agent's own queue and the
shared one, hands each to the local supervisor over the link (as the single host's front end does), and returns
the supervisor's reply as the task's result. Beside it, it renews the host's lease, publishes the
supervisor's change events on Redis for the front ends, after each renewal has the supervisor fence the
host (FenceJobs: a job whose record the lost-host sweep settled while the lease had lapsed is ended at once),
and runs the lost-host sweep (sweep.py) whenever this agent holds the sweep's lock.

The Celery worker runs a pool of threads (a task is a round trip to the supervisor, never the job itself), each
taking one message at a time.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from workerctl.cluster.celery_app import ADOPT_TASK, START_TASK, STOP_TASK, celery_app, quiet_reconnects
from workerctl.cluster.fencing import LeaseFile
from workerctl.cluster.hosts import LEASE_RENEWAL_SECONDS, Cluster
from workerctl.cluster.sweep import LostHostSweep
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.messages import FenceJobs, MalformedMessage, Refusal, Reply, decode, encode
from workerctl.runtime.link import LinkRequest
from workerctl.runtime.link_client import RECONNECT_SECONDS, SENDS, LinkClient
from workerctl.runtime.linux import die_with_parent
from workerctl.runtime.logs import configure_logging
from workerctl.runtime.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.store.interface import StoreError
from workerctl.store.layout import DataLayout
from workerctl.supervisor.keepers import boot_time_ns, jobs_left_to_keepers

log = logging.getLogger(__name__)

_ANSWER_SECONDS = 30.0  # a stop waits for the kill's grace; the front end gives up sooner anyway
_THREADS = 16


class RelayLink:
    """A blocking client of the supervisor's link: requests from the worker's threads, replies and change events
    read by a thread of its own, which reconnects whenever the supervisor restarts."""

    def __init__(self, address: Path, authkey: bytes, on_changed: Callable[[tuple[str, ...]], None]) -> None:
        self._client = LinkClient(address, authkey, on_changed, lambda: log.info("the supervisor is stopping"))
        self._connected = threading.Event()
        threading.Thread(target=self._read_forever, name="relay-link", daemon=True).start()

    def request(self, request: LinkRequest) -> Reply:
        """The supervisor's reply, or a refusal saying why there is none. If the link breaks before the reply,
        the request is sent again to the next supervisor, as a single host's front end does."""
        for _ in range(SENDS):
            if not self._connected.wait(_ANSWER_SECONDS):
                return Refusal(0, ErrorKind.UNAVAILABLE, "the host's supervisor is not available right now")
            answer: queue.SimpleQueue[Reply | None] = queue.SimpleQueue()
            try:
                request_id = self._client.send(request, answer.put)
            except OSError:
                continue
            try:
                reply = answer.get(timeout=_ANSWER_SECONDS)
            except queue.Empty:
                return Refusal(0, ErrorKind.UNAVAILABLE, "the host's supervisor did not answer in time; check with "
                                                         "status whether the request took effect")
            finally:
                self._client.forget(request_id)
            if reply is not None:
                return reply
        return Refusal(0, ErrorKind.UNAVAILABLE, "the host's supervisor stopped while handling the request; check "
                                                 "with status whether it took effect")

    def fence(self) -> None:
        """Have the supervisor fence the host, if it is connected (else it fences at the next renewal)."""
        try:
            self._client.notify(FenceJobs())
        except OSError as error:
            log.warning("cannot tell the supervisor to fence the host: %s", error)

    def _read_forever(self) -> None:
        while True:
            try:
                connection = self._client.connect()
            except (OSError, EOFError):
                time.sleep(RECONNECT_SECONDS)
                continue
            self._client.attach(connection)
            self._connected.set()
            log.info("connected to the supervisor")
            try:
                while True:
                    connection.poll(None)
                    self._client.receive()
            except (EOFError, OSError, MalformedMessage) as error:
                log.warning("lost the supervisor (%s)", str(error) or type(error).__name__)
            self._connected.clear()
            self._client.detach()


def run_relay(settings: ServerSettings, holder: str, link_address: Path, authkey: bytes, parent_pid: int) -> None:
    """Run the agent's Celery worker until SIGTERM, renewing the host's lease for `holder`, the agent's run."""
    configure_logging(settings.log_level)
    die_with_parent(parent_pid)
    assert settings.cluster is not None and settings.name is not None
    cluster = Cluster(settings.cluster)
    app = celery_app(cluster.location)
    link = RelayLink(link_address, authkey, lambda job_ids: cluster.publish_changed(list(job_ids)))
    stopping, stood_down = threading.Event(), threading.Event()
    renewing = threading.Thread(target=_renew_lease, args=(cluster, settings, holder, link, stopping, stood_down),
                                name="lease", daemon=True)
    sweeping = threading.Thread(target=LostHostSweep(cluster, app, settings.host_timeout).run, args=(stopping,),
                                name="sweep", daemon=True)
    renewing.start()
    sweeping.start()

    def relay(payload: str) -> str:
        try:
            message = decode(payload.encode())
        except MalformedMessage as error:
            return encode(Refusal.of(0, ApiError(ErrorKind.BAD_REQUEST, str(error)))).decode()
        if not isinstance(message, LinkRequest):
            return encode(Refusal(0, ErrorKind.BAD_REQUEST, "not a request")).decode()
        return encode(link.request(message)).decode()

    app.task(name=START_TASK)(relay)
    app.task(name=STOP_TASK)(relay)
    app.task(name=ADOPT_TASK, ignore_result=True)(relay)
    quiet_reconnects()
    # Celery warns of running as root for its pickle serializer, which is not accepted here (JSON only).
    warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges")
    # Threads, each one request at a time: a stop holds its thread until the job's processes are gone (up to
    # --kill-grace), and must not hold up the host's other requests.
    worker = app.Worker(pool="threads", concurrency=_THREADS, prefetch_multiplier=1,
                        hostname=f"{settings.name}@workerctl",
                        queues=[cluster.keys.host_queue(settings.name), cluster.keys.shared_queue], without_gossip=True,
                        without_mingle=True, without_heartbeat=True, loglevel=settings.log_level, quiet=True)
    worker.start()  # returns at SIGTERM: the agent's, once the supervisor has ended its jobs, or _stand_down's
    stopping.set()
    renewing.join()
    sweeping.join()
    if not jobs_left_to_keepers(settings):  # else the next run of the agent takes them back, under this lease
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
    lease_file = LeaseFile(DataLayout(settings.data_dir).lease, settings)
    while not stopping.is_set():
        try:
            sent = boot_time_ns()
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
                lease_file.lapse()
                log.critical("another agent holds the lease of host %s (each agent needs a --name of its own): "
                             "stopping this one", settings.name)
                stood_down.set()
                os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
                return
            lease_file.renewed(sent)
            renewed_before, failing = True, False
            link.fence()
        stopping.wait(every)
