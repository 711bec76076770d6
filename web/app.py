"""The HTTPS server: TLS settings, Tornado's limits, and the one route."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web
from workerctl.web.auth import Authenticator
from workerctl.web.handler import HARD_BODY_LIMIT_BYTES, ApiHandler, log_request
from workerctl.web.job_api import JobApi

# Tornado's defaults suit a trusted network: an hour to send headers, no body deadline, 100 MB bodies.
MAX_HEADER_BYTES = 16 * 1024
IDLE_CONNECTION_SECONDS = 30.0  # also bounds the TLS handshake and the headers of a new request
BODY_SECONDS = 10.0
_WARNING_INTERVAL_SECONDS = 10.0

log = logging.getLogger(__name__)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The standard library's server defaults, TLS 1.2 at least; ssl.SSLError or OSError if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class CappedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that closes connections past `max_connections` at once, so that a flood of idle
    connections cannot use up the process's descriptors and lock everyone else out."""

    max_connections = 10_000
    _last_warning = 0.0

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:  # Tornado's own set of open connections
            stream.close()
            now = time.monotonic()
            if now - self._last_warning > _WARNING_INTERVAL_SECONDS:
                self._last_warning = now
                log.warning("refusing connections: %d are open already", len(self._connections))
            return
        super().handle_stream(stream, address)


def build_server(api: JobApi, auth: Authenticator, tls: ssl.SSLContext,
                 max_connections: int) -> tornado.httpserver.HTTPServer:
    application = tornado.web.Application(
        [(r".*", ApiHandler, {"api": api, "auth": auth})],
        log_function=log_request,
        serve_traceback=False,
    )
    server = CappedHTTPServer(
        application,
        ssl_options=tls,
        max_header_size=MAX_HEADER_BYTES,
        max_body_size=HARD_BODY_LIMIT_BYTES,
        idle_connection_timeout=IDLE_CONNECTION_SECONDS,
        body_timeout=BODY_SECONDS,
        decompress_request=False,
    )
    server.max_connections = max_connections
    return server
