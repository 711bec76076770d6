"""`workerctl serve --cluster URL`: a front end of a cluster, alone in its process. It runs no supervisor and
no jobs (the agents do), so the flags that only a supervisor uses are ignored. It opens the cluster's JobLink
(workerctl.cluster) and hands it to the front end, which knows nothing of Redis or Celery."""

from __future__ import annotations

import logging
import socket

from workerctl.cluster.front_end_link import ClusterLink
from workerctl.runtime.logs import announce, configure_logging
from workerctl.runtime.settings import SUPERVISOR_SETTINGS, ServerSettings, changed_flags
from workerctl.server.serve import ServeError, check_front_end_settings
from workerctl.store.backends import open_reader
from workerctl.store.interface import JobReader, StoreError
from workerctl.store.redis_connection import RedisLocation
from workerctl.web.main import serve_front_end

log = logging.getLogger(__name__)


def run_cluster_server(settings: ServerSettings) -> int:
    configure_logging(settings.log_level)
    assert settings.cluster is not None
    check_front_end_settings(settings)
    location = settings.cluster
    try:
        where = RedisLocation.parse(location).where
    except StoreError as error:
        raise ServeError(str(error)) from None
    ignored = changed_flags(settings, SUPERVISOR_SETTINGS)
    if ignored:
        log.warning("ignoring %s: a cluster's front end runs no jobs, and each agent has its own", ", ".join(ignored))
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        listening = socket.create_server((settings.host, settings.port), family=family, backlog=1024)
    except OSError as error:
        raise ServeError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}") from None
    host, port = listening.getsockname()[:2]
    announce.info("listening on https://%s:%d as a front end of the cluster at %s (the supervisor's settings are "
                  "the agents')", f"[{host}]" if ":" in host else host, port, where)
    serve_front_end(settings, listening, lambda: _open_link(location), alone=True)
    announce.info("stopped")
    return 0


def _open_link(location: str) -> tuple[ClusterLink, JobReader]:
    """The cluster's JobLink and the shared store it reads; a Redis that is down now is no error (the front end
    answers 503 until it is back)."""
    jobs = open_reader(location, may_be_down=True)
    return ClusterLink(location, jobs), jobs
