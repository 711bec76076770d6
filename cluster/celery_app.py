"""The Celery app that carries start, stop and adopt requests from a cluster's front ends and sweeps to its agents,
and its connection to the cluster's Redis, made to come back quickly: a relay whose Redis was down takes
requests again within a second of Redis answering, instead of after kombu's backoff (2 s more per attempt, up
to 30 s), and says so once per outage rather than at every attempt.

Celery only carries messages: a task's argument is a supervisor request (protocol/messages.py, as JSON) and its
result the supervisor's reply. Each agent consumes its own queue and the shared one (a thread per message, each
taking one at a time), and acknowledges a message when it takes it (never `acks_late`: a redelivered start would
run a command twice); a request not taken before its sender stops waiting expires unrun. Celery never signals a
job: every process is the agent's supervisor's to control.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu import Connection
from workerctl.cluster.hosts import ClusterKeys
from workerctl.store.redis_connection import RedisLocation

START_TASK = "workerctl.start"
STOP_TASK = "workerctl.stop"
ADOPT_TASK = "workerctl.adopt"
RECONNECT_SECONDS = 1.0


class QuickReconnection(Connection):  # type: ignore[misc]
    """A kombu connection that, when it must be made again, tries every second, for as long as it takes."""

    def ensure_connection(self, errback: Any = None, max_retries: int | None = None, interval_start: float = 0,
                          interval_step: float = 0, interval_max: float = 0, **options: Any) -> Connection:
        return super().ensure_connection(errback, max_retries, RECONNECT_SECONDS, 0, RECONNECT_SECONDS, **options)


class QuickReconnectingAMQP(AMQP):  # type: ignore[misc]
    """Celery's broker plumbing with QuickReconnection as its connection class."""

    Connection = QuickReconnection


class OnceUntilConnected(logging.Filter):
    """Let through the first of the consumer's "Cannot connect" errors, then none until it has connected again."""

    def __init__(self) -> None:
        super().__init__()
        self._reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Connected to"):
            self._reported = False
        elif "Cannot connect to" in message:
            if self._reported:
                return False
            self._reported = True
        return True


def quiet_reconnects() -> None:
    """Have Celery's consumer report a lost broker once until it is connected again."""
    once = OnceUntilConnected()
    for name in ("celery.worker.consumer.consumer", "celery.worker.consumer.connection"):  # errors, "Connected"
        logging.getLogger(name).addFilter(once)


def celery_app(location: RedisLocation) -> Any:
    """The Celery app on the cluster's Redis: JSON only, no retries of a publish, early acknowledgement, and a
    broker connection that comes back within a second of Redis (QuickReconnection)."""
    options = {"global_keyprefix": f"{location.prefix}:celery:", "socket_timeout": 2.0,
               "socket_connect_timeout": 1.0}
    url = location.url
    if url.startswith("rediss://") and "ssl_cert_reqs=" not in url:  # Celery's result backend insists on it
        url += f"{'&' if '?' in url else '?'}ssl_cert_reqs=required"
    app = Celery("workerctl", broker=url, backend=url, set_as_current=False, amqp=QuickReconnectingAMQP)
    app.conf.update(
        broker_connection_max_retries=None,  # a relay waits for Redis for as long as it is down
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        task_acks_late=False, worker_prefetch_multiplier=1, task_publish_retry=False,
        broker_transport_options=options, result_backend_transport_options=options, result_expires=60,
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, worker_send_task_events=False,
        task_default_queue=ClusterKeys(location.prefix).shared_queue, worker_enable_remote_control=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app
