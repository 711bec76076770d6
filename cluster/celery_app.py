"""Celery's connection to the cluster's Redis, made to come back quickly: a relay whose Redis was down takes
requests again within a second of Redis answering, instead of after kombu's backoff (2 s more per attempt, up
to 30 s), and says so once per outage rather than at every attempt.

Imported only by celery_app (cluster.py), so a single host never imports Celery.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.app.amqp import AMQP
from kombu import Connection

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
