"""The HTTPS server: TLS settings, Tornado's limits, and the routes: the web view, the API and its document."""

from __future__ import annotations

import logging
import ssl

import tornado.httpserver
import tornado.iostream
import tornado.web
from workerctl.web.api_document import DocumentHandler
from workerctl.web.audit import AuditLog
from workerctl.web.auth import Authenticator
from workerctl.web.connections import GuardedHTTPServer
from workerctl.web.handler import ApiHandler, log_request
from workerctl.web.health import HealthHandler, ReadinessHandler
from workerctl.web.job_api import JobApi
from workerctl.web.page import view_routes
from workerctl.web.rate_limit import RateLimiter, RefusalBrake

# Tornado's defaults suit a trusted network: an hour to send headers, no body deadline, 100 MB bodies.
MAX_HEADER_BYTES = 16 * 1024  # past it: 431
IDLE_CONNECTION_SECONDS = 30.0  # between requests on a kept-alive connection, and for a new request's headers
BODY_SECONDS = 10.0
# Tornado refuses a body past this with a bare 400; below it the handler reads (and drops) what is past the
# API's limit and answers 413. Content-Length past HARD_BODY_LIMIT_BYTES is refused before any of it is read.
_TORNADO_BODY_LIMIT_BYTES = 1024**3

log = logging.getLogger(__name__)


def build_server(api: JobApi, auth: Authenticator, limiter: RateLimiter, audit: AuditLog | None, tls: ssl.SSLContext,
                 max_connections: int, max_per_client: int, handshake_seconds: float) -> tornado.httpserver.HTTPServer:
    application = tornado.web.Application(
        [(r"/openapi\.json", DocumentHandler),
         (r"/healthz", HealthHandler),
         (r"/readyz", ReadinessHandler, {"link": api.link}),
         *view_routes(),  # GET / is the page; any other method on / goes on to the API
         (r".*", ApiHandler,
          {"api": api, "auth": auth, "limiter": limiter, "brake": RefusalBrake(), "audit": audit})],
        log_function=log_request,
        serve_traceback=False,
    )
    server = GuardedHTTPServer(
        application,
        ssl_options=tls,
        max_header_size=MAX_HEADER_BYTES,
        max_body_size=_TORNADO_BODY_LIMIT_BYTES,
        idle_connection_timeout=IDLE_CONNECTION_SECONDS,
        body_timeout=BODY_SECONDS,
        decompress_request=False,
    )
    server.max_connections = max_connections
    server.max_per_client = max_per_client
    server.handshake_seconds = handshake_seconds
    return server
