"""`workerctl serve --cluster URL`: a front end of a cluster, alone in its process. It runs no supervisor and
no jobs (the agents do), so the flags that only a supervisor uses are ignored."""

from __future__ import annotations

import logging
import socket

from workerctl.server.logs import announce, configure_logging
from workerctl.server.serve import ServeError, check_front_end_settings
from workerctl.server.settings import SUPERVISOR_SETTINGS, ServerSettings, changed_flags
from workerctl.store.interface import StoreError
from workerctl.store.redis_connection import RedisLocation
from workerctl.web.main import run_cluster_front_end

log = logging.getLogger(__name__)


def run_cluster_server(settings: ServerSettings) -> int:
    configure_logging(settings.log_level)
    assert settings.cluster is not None
    check_front_end_settings(settings)
    try:
        where = RedisLocation.parse(settings.cluster).where
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
    run_cluster_front_end(settings, listening)
    announce.info("stopped")
    return 0
