"""The front end's entry points: serve HTTPS on a socket its launcher bound, with the jobs behind a JobLink (a single
host's supervisor link, or the cluster's link its launcher opens), until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from tornado.httpserver import HTTPServer
from workerctl.runtime.linux import die_with_parent, raise_open_files_limit
from workerctl.runtime.logs import announce, configure_logging
from workerctl.runtime.settings import UNUSABLE_SETTINGS_EXIT, ServerSettings
from workerctl.runtime.tls import tls_context
from workerctl.store.backends import open_reader
from workerctl.store.interface import JobReader, StoreError
from workerctl.store.users import UsersFileError
from workerctl.web.app import build_server
from workerctl.web.audit import AuditLog
from workerctl.web.auth import Authenticator
from workerctl.web.job_api import JobApi
from workerctl.web.job_link import JobLink
from workerctl.web.rate_limit import RateLimiter
from workerctl.web.supervisor_link import SupervisorLink

log = logging.getLogger(__name__)

_DRAIN_SECONDS = 2.0
_MAX_CONNECTIONS = 10_000
_SPARE_DESCRIPTORS = 64


LinkOpener = Callable[[], tuple[JobLink, JobReader]]
"""Opens the front end's link to the jobs, and the store it reads them from; StoreError or OSError if either
cannot be used."""


def run_front_end(settings: ServerSettings, listening: socket.socket, link_address: Path, authkey: bytes,
                  parent_pid: int) -> None:
    """A single host's front end, beside its supervisor at `link_address`, until SIGTERM."""
    configure_logging(settings.log_level)
    die_with_parent(parent_pid)
    serve_front_end(settings, listening, lambda: (SupervisorLink(link_address, authkey, settings.unavailable_wait),
                                                  open_reader(settings.data_dir)))


def serve_front_end(settings: ServerSettings, listening: socket.socket, open_link: LinkOpener,
                    alone: bool = False) -> None:
    """Serve HTTPS on `listening` with the jobs behind `open_link`'s link until SIGTERM, or Ctrl-C if the front
    end is `alone` in its process (else the serve process decides)."""
    try:
        auth = Authenticator(settings.users)
        tls = tls_context(settings.cert, settings.key, settings.client_ca, settings.require_client_cert)
        audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
        link, jobs = open_link()
    except (UsersFileError, OSError, ssl.SSLError, StoreError) as error:
        log.critical("the front end cannot start: %s", error)
        sys.exit(UNUSABLE_SETTINGS_EXIT)
    api = JobApi(link, jobs, settings.kill_grace, settings.start_wait)
    # Every connection holds a descriptor: allow many, and keep a margin for the rest of the process.
    max_connections = min(_MAX_CONNECTIONS, raise_open_files_limit() - _SPARE_DESCRIPTORS)
    server = build_server(api, auth, RateLimiter(settings.rate_limit), audit, tls, max_connections,
                          settings.max_connections_per_client, settings.handshake_timeout)
    asyncio.run(_serve(server, listening, link, alone))


async def _serve(server: HTTPServer, listening: socket.socket, link: JobLink, alone: bool) -> None:
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
    link.watchers.close()  # long polls and follows are answered now, not cut off when the drain times out
    try:
        await asyncio.wait_for(server.close_all_connections(), _DRAIN_SECONDS)
    except asyncio.TimeoutError:
        pass
    maintaining.cancel()


async def _accept_when_ready(server: HTTPServer, link: JobLink, listening: socket.socket) -> None:
    """Accept connections once they can be served: until the supervisor is first connected, clients wait in the
    listening socket's backlog rather than get 503 (a cluster's front end answers 503 while Redis is down)."""
    await link.ready()
    server.add_sockets([listening])
    host, port = listening.getsockname()[:2]
    announce.info("serving https://%s:%d", f"[{host}]" if ":" in host else host, port)
