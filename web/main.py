"""The front end process's entry point: serve HTTPS on the socket the serve process bound, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
from pathlib import Path

from tornado.httpserver import HTTPServer
from workerctl.server.linux import die_with_parent, raise_open_files_limit
from workerctl.server.logs import announce, configure_logging
from workerctl.server.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.store.backends import open_reader
from workerctl.store.interface import StoreError
from workerctl.store.users import UsersFileError
from workerctl.web.app import build_server, tls_context
from workerctl.web.audit import AuditLog
from workerctl.web.auth import Authenticator
from workerctl.web.job_api import JobApi
from workerctl.web.rate_limit import RateLimiter
from workerctl.web.supervisor_link import JobWatchers, SupervisorLink

log = logging.getLogger(__name__)

_DRAIN_SECONDS = 2.0
_MAX_CONNECTIONS = 10_000
_SPARE_DESCRIPTORS = 64


def run_front_end(settings: ServerSettings, listening: socket.socket, link_address: Path, authkey: bytes,
                  parent_pid: int) -> None:
    configure_logging(settings.log_level)
    die_with_parent(parent_pid)
    try:
        auth = Authenticator(settings.users)
        tls = tls_context(settings.cert, settings.key, settings.client_ca, settings.require_client_cert)
        jobs = open_reader(settings.data_dir)
        audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
    except (UsersFileError, OSError, ssl.SSLError, StoreError) as error:
        log.critical("the front end cannot start: %s", error)
        sys.exit(UNUSABLE_SETTINGS_EXIT)
    link = SupervisorLink(link_address, authkey, JobWatchers(), settings.unavailable_wait)
    api = JobApi(link, jobs, settings.kill_grace)
    # Every connection holds a descriptor: allow many, and keep a margin for the rest of the process.
    max_connections = min(_MAX_CONNECTIONS, raise_open_files_limit() - _SPARE_DESCRIPTORS)
    server = build_server(api, auth, RateLimiter(settings.rate_limit), audit, tls, max_connections,
                          settings.max_connections_per_client, settings.handshake_timeout)
    asyncio.run(_serve(server, listening, link))


def run_cluster_front_end(settings: ServerSettings, listening: socket.socket) -> None:
    """A front end of the cluster whose Redis is `settings.cluster`: starts and stops go to its agents over Celery,
    the rest is read from the shared store. Runs until SIGTERM."""
    from workerctl.web.cluster_link import ClusterLink

    assert settings.cluster is not None
    try:
        auth = Authenticator(settings.users)
        tls = tls_context(settings.cert, settings.key, settings.client_ca, settings.require_client_cert)
        audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
        link = ClusterLink(settings.cluster, JobWatchers(), open_reader(settings.cluster, may_be_down=True),
                           settings.host_timeout)
    except (UsersFileError, OSError, ssl.SSLError, StoreError) as error:
        log.critical("the front end cannot start: %s", error)
        sys.exit(UNUSABLE_SETTINGS_EXIT)
    api = JobApi(link, link.jobs, settings.kill_grace)  # type: ignore[arg-type]
    max_connections = min(_MAX_CONNECTIONS, raise_open_files_limit() - _SPARE_DESCRIPTORS)
    server = build_server(api, auth, RateLimiter(settings.rate_limit), audit, tls, max_connections,
                          settings.max_connections_per_client, settings.handshake_timeout)
    asyncio.run(_serve(server, listening, link, alone=True))  # type: ignore[arg-type]


async def _serve(server: HTTPServer, listening: socket.socket, link: SupervisorLink, alone: bool = False) -> None:
    """Serve until SIGTERM, or Ctrl-C if the front end is `alone` in its process (else the serve process decides)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set if alone else lambda: None)
    listening.setblocking(False)  # Tornado accepts until the socket would block
    maintaining = asyncio.create_task(link.maintain())
    accepting = asyncio.create_task(_accept_when_ready(server, link, listening))
    await stop.wait()
    accepting.cancel()
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), _DRAIN_SECONDS)
    except asyncio.TimeoutError:
        pass
    maintaining.cancel()


async def _accept_when_ready(server: HTTPServer, link: SupervisorLink, listening: socket.socket) -> None:
    """Accept connections once they can be served: until the supervisor is first connected, clients wait in the
    listening socket's backlog rather than get 503 (a cluster's front end answers 503 while Redis is down)."""
    await link.ready()
    server.add_sockets([listening])
    host, port = listening.getsockname()[:2]
    announce.info("serving https://%s:%d", f"[{host}]" if ":" in host else host, port)
