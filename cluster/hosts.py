"""A cluster's hosts as its Redis holds them, for its front ends and its agents: the agents' leases, placement,
the change events, and settling a lost host's jobs (which the agents' sweep, sweep.py, decides).

Keys, beside the store's and under the same prefix:

    host:<name>    the agent's lease: JSON of its holder (one run of the agent), --max-jobs and --kill-grace,
                   expiring `--host-timeout` after its last renewal; only its holder renews or deletes it
    hosts          set: every agent that has held a lease and whose jobs are not yet settled as lost
    sweeper        the lock of the agent that sweeps lost hosts now (redis-py's Lock: a token, with a TTL)
    changed        pub/sub channel: job IDs (JSON list) whose record or output an agent's supervisor changed
    celery:…       Celery's queues and results (celery_app.py)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis
from workerctl.protocol.jobs import JobStatus
from workerctl.store.interface import JobRecord, StoreError
from workerctl.store.output_log import OutputLimits
from workerctl.store.redis_connection import RedisKeys, RedisLocation, connect, storing

log = logging.getLogger(__name__)

LEASE_RENEWAL_SECONDS = 2.0
_WRITER_OUTPUT_BYTES = 1024 * 1024  # this writer writes no output; it needs a cap all the same


# Renew lease KEYS[1] as ARGV[2] for holder ARGV[1], for ARGV[3] ms, and add host ARGV[4] to the hosts (KEYS[2]),
# unless another holder has it. The lease as it was (nil if none).
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held).holder ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
return held
"""

# Delete lease KEYS[1] if holder ARGV[1] holds it.
_GIVE_UP = """
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held).holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def lost_reason(name: str) -> str:
    return f"host {name} lost"


@dataclass(frozen=True)
class ClusterKeys:
    prefix: str

    @property
    def hosts(self) -> str:
        return f"{self.prefix}:hosts"

    @property
    def changed(self) -> str:
        return f"{self.prefix}:changed"

    @property
    def sweeper(self) -> str:
        return f"{self.prefix}:sweeper"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:host:{name}"

    @property
    def shared_queue(self) -> str:
        return f"{self.prefix}.jobs"

    def host_queue(self, name: str) -> str:
        return f"{self.prefix}.host.{name}"


class Cluster:
    """One process's view of the cluster's hosts: leases, placement, and settling lost hosts."""

    def __init__(self, location_text: str) -> None:
        self.location_text = location_text
        self.location = RedisLocation.parse(location_text)
        self.keys = ClusterKeys(self.location.prefix)
        self.store_keys = RedisKeys(self.location.prefix)
        self.client = connect(self.location)
        self._job_writer: Any = None

    def renew_lease(self, name: str, holder: str, max_jobs: int, kill_grace: float, host_timeout: float) -> str | None:
        """Renew the host's lease for `holder` (one run of its agent), unless another holds it; who held it until
        now (None the first time, and after a lapse; another holder's name if it was not renewed)."""
        lease = json.dumps({"holder": holder, "maxJobs": max_jobs, "killGrace": kill_grace})
        with storing("renew the host's lease", self.location.where):
            held = self.client.eval(_RENEW, 2, self.keys.lease(name), self.keys.hosts, holder, lease,
                                    int(host_timeout * 1000), name)
        return json.loads(held)["holder"] if held is not None else None

    def lease(self, name: str) -> dict[str, Any] | None:
        """The host's lease now (`holder`, `maxJobs`, `killGrace`), if anyone holds it."""
        with storing("read the host's lease", self.location.where):
            held = self.client.get(self.keys.lease(name))
        return json.loads(held) if held is not None else None

    def give_up_lease(self, name: str, holder: str) -> None:
        """End the host's lease now, at a clean stop, if `holder` holds it: starts are no longer placed on it,
        and the sweep settles whatever its jobs' records still say is unfinished (none, if its supervisor
        recorded their ends)."""
        with storing("give up the host's lease", self.location.where):
            self.client.eval(_GIVE_UP, 1, self.keys.lease(name), holder)

    def stop_waiting(self, record: JobRecord) -> JobRecord | None:
        """Stop a job that waits (created) on its host, without that host; its record, or None if it no longer
        waits there."""
        assert record.host is not None
        stopped = self._writer().stop_waiting(record.id, record.owner, record.host)
        if stopped is not None:
            self.publish_changed([stopped.id])
        return stopped

    def live_hosts(self) -> dict[str, int]:
        """Each host holding a lease, and how many jobs it runs at once."""
        return {name: lease["maxJobs"] for name, lease in self._leases().items() if lease is not None}

    def lapsed_hosts(self) -> list[str]:
        """The hosts whose lease has lapsed and whose jobs are not yet settled as lost."""
        return [name for name, lease in self._leases().items() if lease is None]

    def _leases(self) -> dict[str, dict[str, Any] | None]:
        """Every host in `hosts`, by name, with its lease (None where it has lapsed)."""
        with storing("read the hosts", self.location.where):
            names = sorted(name.decode() for name in self.client.smembers(self.keys.hosts))
            leases = self.client.mget([self.keys.lease(name) for name in names]) if names else []
        return {name: json.loads(lease) if lease is not None else None for name, lease in zip(names, leases)}

    def busy(self, names: list[str]) -> dict[str, int]:
        """How many unsettled (created or running) jobs each of these hosts has."""
        with storing("read the unsettled jobs", self.location.where):
            counts = self.client.pipeline(transaction=False)
            for name in names:
                counts.zcard(self.store_keys.unsettled_on(name))
            return dict(zip(names, counts.execute()))

    def place(self, count: int = 1, hosts: dict[str, int] | None = None) -> list[str]:
        """The queues for `count` new jobs, one by one: the host with the most free slots left, or the shared
        queue once no host has one. `hosts` are the live hosts, if the caller has read them already."""
        hosts = self.live_hosts() if hosts is None else hosts
        busy = self.busy(list(hosts))
        free = {name: slots - busy[name] for name, slots in hosts.items()}
        queues = []
        for _ in range(count):
            best = max(free, key=lambda name: (free[name], name), default=None)
            if best is None or free[best] <= 0:
                queues.append(self.keys.shared_queue)
            else:
                queues.append(self.keys.host_queue(best))
                free[best] -= 1
        return queues

    def publish_changed(self, job_ids: list[str]) -> None:
        try:
            self.client.publish(self.keys.changed, json.dumps(job_ids))
        except redis.RedisError as error:  # front ends re-read every job now and then anyway
            log.debug("cannot publish job changes: %s", error)

    def settle_lost_host(self, name: str) -> list[JobRecord]:
        """Settle the running jobs of a host whose lease has lapsed as `error`, "host NAME lost"; the jobs that
        wait on it (created, never started: a job is recorded as running before it starts), for other hosts to
        take over. The agents' sweep does, one agent at a time (sweep.py); two at once would write the same. The
        host is forgotten once none of its jobs waits."""
        writer = self._writer()
        writer.host = name
        unsettled = writer.unsettled()
        running = [record for record in unsettled if record.status is JobStatus.RUNNING]
        for record in running:
            record.move_to(JobStatus.ERROR, reason=lost_reason(name))
            writer.save(record)
        try:
            writer.commit()
        except StoreError:
            writer.rollback()
            raise
        waiting = [record for record in unsettled if record.status is JobStatus.CREATED]
        if not waiting:
            self._forget_host(name)
        if running:
            log.warning("host %s lost: settled its %d running jobs", name, len(running))
            self.publish_changed([record.id for record in running])
        return waiting

    def _forget_host(self, name: str) -> None:
        """Take the host out of `hosts`, unless it has come back meanwhile (its renewal adds it with its lease)."""
        with storing("forget a lost host", self.location.where), self.client.pipeline(transaction=True) as forget:
            try:
                forget.watch(self.keys.lease(name))
                if not forget.exists(self.keys.lease(name)):
                    forget.multi()
                    forget.srem(self.keys.hosts, name)
                    forget.execute()
            except redis.WatchError:
                pass

    def _writer(self) -> Any:
        if self._job_writer is None:
            from workerctl.store.redis_store import RedisJobWriter
            self._job_writer = RedisJobWriter(self.location_text, OutputLimits.for_cap(_WRITER_OUTPUT_BYTES))
        return self._job_writer

    def close(self) -> None:
        self.client.close()
        if self._job_writer is not None:
            self._job_writer.close()
