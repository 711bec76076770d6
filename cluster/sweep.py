"""The lost-host sweep, which every agent's relay runs and one agent at a time does: the holder of the cluster's
`sweeper` lock (redis-py's Lock: SET NX PX with a token of its own, renewed at every check) looks every second
for hosts whose lease has lapsed, settles their running jobs as lost, and hands their waiting ones to the hosts
left (AdoptJob, placed as new jobs are). The lock lapses --host-timeout after its holder's last renewal (its
agent killed, frozen or cut off from Redis), and the next agent to look takes it; at a clean stop its holder
gives it up. Two sweeps at once would write the same (the store's moves are guarded): the lock spares the work
and keeps the story in one agent's log. Front ends do not sweep: a cluster with none running still settles its
lost hosts.

A sweep takes no host for lost until Redis has answered its agent for --host-timeout: a lease that lapsed while
Redis was down, or before this agent looked, may be a live agent's that has not been able to renew it yet.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from redis.exceptions import LockError, LockNotOwnedError, RedisError
from workerctl.cluster.celery_app import ADOPT_TASK
from workerctl.cluster.hosts import Cluster
from workerctl.protocol.messages import AdoptJob, encode
from workerctl.store.interface import JobRecord, StoreError
from workerctl.store.redis_connection import storing

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class LostHostSweep:
    def __init__(self, cluster: Cluster, celery: Any, host_timeout: float) -> None:
        self.cluster = cluster
        self.celery = celery
        self.host_timeout = host_timeout
        self._lock = cluster.client.lock(cluster.keys.sweeper, timeout=host_timeout, blocking=False)
        self._holding = False
        self._answering_since: float | None = None  # since when Redis has answered every check
        self._given_time: set[str] = set()  # lapsed hosts given until --host-timeout after that to renew
        self._handed_over: dict[str, float] = {}  # lost hosts with waiting jobs: when to hand them over again

    def run(self, stopping: threading.Event) -> None:
        """Check every second (sooner with a short --host-timeout), and sweep while this agent holds the lock,
        until `stopping` is set; then give the lock up."""
        every = min(CHECK_SECONDS, self.host_timeout / 4)
        while not stopping.is_set():
            try:
                self._check()
            except StoreError as error:
                if self._answering_since is not None:
                    log.warning("%s; the sweep of lost hosts waits until it can", error)
                self._answering_since = None
            stopping.wait(every)
        self._give_up()

    def _check(self) -> None:
        with storing("hold the sweep's lock", self.cluster.location.where):
            holding = self._hold()
        now = time.monotonic()
        if self._answering_since is None:
            self._answering_since = now
        if holding:
            self._sweep(self.cluster.lapsed_hosts(), now - self._answering_since)

    def _hold(self) -> bool:
        """Whether this agent sweeps now: it renews the lock it holds, or takes the lock if no one holds it."""
        if self._holding:
            try:
                self._lock.reacquire()
                return True
            except LockNotOwnedError:
                log.warning("the sweep's lock lapsed: another agent may sweep lost hosts now")
        self._holding = bool(self._lock.acquire())
        if self._holding:
            log.info("sweeping lost hosts for the cluster")
        return self._holding

    def _give_up(self) -> None:
        if self._holding:
            try:
                self._lock.release()
            except (LockError, RedisError) as error:  # lapsed, or Redis gone: it lapses by itself
                log.debug("cannot give up the sweep's lock: %s", error)

    def _sweep(self, lapsed: list[str], answered_for: float) -> None:
        """Settle the jobs of the hosts whose lease lapsed, once Redis has answered for --host-timeout."""
        if answered_for < self.host_timeout:
            for name in set(lapsed) - self._given_time:
                log.info("host %s holds no lease; it is lost unless it renews it within %g s", name,
                         self.host_timeout - answered_for)
            self._given_time.update(lapsed)
            return
        self._given_time.clear()
        for name in lapsed:
            waiting = self.cluster.settle_lost_host(name)
            if not waiting:
                self._handed_over.pop(name, None)
            elif time.monotonic() >= self._handed_over.get(name, 0.0):
                # Again after --host-timeout while any still waits: a request may reach a host that dies too
                # (and expires unanswered meanwhile).
                try:
                    if self._hand_over(name, waiting):
                        self._handed_over[name] = time.monotonic() + self.host_timeout
                except Exception as error:  # Celery's and kombu's own connection errors; tried at the next sweep
                    log.warning("cannot hand host %s's waiting jobs over: %s", name, error)

    def _hand_over(self, name: str, waiting: list[JobRecord]) -> bool:
        """Ask other hosts to take over the jobs that wait on lost host `name`, placed as new jobs are; False if
        no host is there to ask. A job goes to one of them only (the store's adopt is guarded), and never runs on
        the lost host after."""
        hosts = self.cluster.live_hosts()
        if not hosts:
            return False
        log.warning("host %s lost: handing its %d waiting jobs to other hosts", name, len(waiting))
        for record, queue in zip(waiting, self.cluster.place(len(waiting), hosts)):
            message = AdoptJob(0, record.owner, record.id, name)
            self.celery.send_task(ADOPT_TASK, args=[encode(message).decode()], queue=queue, ignore_result=True,
                                  expires=self.host_timeout)
        return True
