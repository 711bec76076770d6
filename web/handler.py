"""The one HTTP endpoint, `POST /`: read the body, authenticate, dispatch the action, answer JSON.

Every answer, errors included, is JSON (see answers.py), but for the output that `logs` streams. The body is read
as a stream so a body over the limit gets a 413 whether it announces its length or arrives chunked.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import Future

import msgspec
import tornado.httputil
import tornado.web
from tornado.iostream import StreamClosedError
from workerctl.protocol.actions import ACTIONS, Request, parse_body, parse_request
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.protocol.jobs import MAX_BODY_BYTES, is_job_id
from workerctl.web.answers import JsonHandler
from workerctl.web.audit import AuditLog
from workerctl.web.auth import Authenticator
from workerctl.web.job_api import JobApi
from workerctl.web.rate_limit import RateLimiter, RefusalBrake

log = logging.getLogger(__name__)

_BRAKED = frozenset({ErrorKind.UNAUTHORIZED, ErrorKind.RATE_LIMITED})
"""Refusals a client may go on asking for: past a budget per address, they are answered slowly (rate_limit.py)."""
_TOO_LARGE = f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
HARD_BODY_LIMIT_BYTES = 256 * MAX_BODY_BYTES
"""Past this the connection is dropped without reading the body; up to it, a body too large is read and
thrown away, then answered with 413."""


class ClientGone(Exception):
    """The client closed the connection while we were streaming to it."""


@tornado.web.stream_request_body
class ApiHandler(JsonHandler):
    ALLOWED_METHODS = "GET, HEAD, POST"  # on /, the one path it answers a 405 for: GET and HEAD are the web view's

    def initialize(self, api: JobApi, auth: Authenticator, limiter: RateLimiter, brake: RefusalBrake,
                   audit: AuditLog | None) -> None:
        self.api = api
        self.auth = auth
        self.limiter = limiter
        self.brake = brake
        self.audit = audit
        self.log_action: str | None = None
        self.log_user: str | None = None
        self.log_job: str | None = None
        self._body = bytearray()
        self._too_large = False
        self._streaming = False
        self._following: str | None = None
        self._client_gone = False
        self._audited = False

    def prepare(self) -> None:
        if self.request.path != "/":
            raise ApiError(ErrorKind.NOT_FOUND, "there is nothing here: the API is POST / with a JSON body")
        if self.request.method != "POST":
            raise ApiError(ErrorKind.METHOD_NOT_ALLOWED, "/ takes POST with a JSON body (the API), or GET (the web "
                                                         "view)")
        declared = _declared_length(self.request.headers)
        if declared > HARD_BODY_LIMIT_BYTES:  # Tornado would drop the connection; answer first
            raise ApiError(ErrorKind.TOO_LARGE, _TOO_LARGE)
        # Otherwise read (and drop) the body before answering 413: a client still sending it when the
        # connection closes would see a broken connection instead of the answer.
        self._too_large = declared > MAX_BODY_BYTES

    def finish(self, chunk: str | bytes | dict | None = None) -> Future[None]:
        # The audit line is written before the answer leaves: whoever reads the answer finds the line there.
        if self.audit is not None and not self._audited:
            self._audited = True
            self.audit.record(self.log_user, self.request.remote_ip or "-", self.log_action, self.log_job,
                              self.get_status())
        return super().finish(chunk)

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > MAX_BODY_BYTES:
            self._too_large = True  # keep reading to the end, keep nothing
        elif not self._too_large:
            self._body += chunk

    async def post(self) -> None:
        try:
            await self._act()
        except ApiError as error:
            if error.kind in _BRAKED:
                pause = self.brake.pause_before_refusing(self.request.remote_ip or "-")
                if pause:
                    await asyncio.sleep(pause)
            raise

    async def _act(self) -> None:
        if self._too_large:
            raise ApiError(ErrorKind.TOO_LARGE, _TOO_LARGE)
        body = parse_body(bytes(self._body))
        # What the request asked for, as far as it is one of ours: the logs never carry what a client made up.
        action = body.get("action")
        self.log_action = action if isinstance(action, str) and action in ACTIONS else None  # a dict is unhashable
        self.log_job = body.get("jobID") if isinstance(body.get("jobID"), str) and is_job_id(body["jobID"]) else None
        if _from_another_site(self.request):
            raise ApiError(ErrorKind.FORBIDDEN, "a page of another site may not act here on your behalf")
        user = self.auth.caller(_certificate_name(self.request), body, self.request.headers.get("Authorization"))
        self.log_user = user
        self.limiter.take(user)
        request = parse_request(body)
        if request.answer is None:
            await self._stream(user, request)
        else:
            answer = await self.api.answer(user, request)
            self.log_job = self.log_job or getattr(answer, "job_id", None)
            self._finish_encoded(msgspec.json.encode(answer))

    async def _stream(self, user: str, request: Request) -> None:
        async def send(data: bytes) -> None:
            self._start_streaming()
            self.write(data)
            try:
                await self.flush()  # waits until the client has taken it: memory stays flat however much
            except StreamClosedError:
                raise ClientGone from None

        self._following = getattr(request, "job_id", None)
        try:
            await self.api.streams[type(request)](user, request, send, lambda: self._client_gone)
        except ClientGone:
            return
        if self._client_gone:
            return
        self._start_streaming()
        self.finish()

    def on_connection_close(self) -> None:
        # Tornado's own fails a body still being streamed in; without it, the handler of a truncated request
        # would wait for the rest forever, and hold its memory.
        super().on_connection_close()
        self._client_gone = True
        if self._following is not None:  # wake the follower, so it notices now rather than at its next recheck
            self.api.link.watchers.notify([self._following])

    def _start_streaming(self) -> None:
        if not self._streaming:
            self._streaming = True
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("X-Content-Type-Options", "nosniff")


def _from_another_site(request: tornado.httputil.HTTPServerRequest) -> bool:
    """Whether a browser sent this for a page of another site. The body is read as JSON whatever its type, and
    a browser offers a client certificate by itself, so without this check any site could act for someone who
    has one installed. The CLI, curl and libraries send neither header."""
    fetched_from = request.headers.get("Sec-Fetch-Site")
    if fetched_from is not None and fetched_from not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.protocol}://{request.host}"


def _certificate_name(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The common name of the client certificate the connection verified, if it offered one."""
    certificate = request.get_ssl_certificate()
    if not certificate:
        return None
    subject = dict(attribute for names in certificate["subject"] for attribute in names)
    return subject.get("commonName", "")


def _declared_length(headers: tornado.httputil.HTTPHeaders) -> int:
    """The body length the headers announce (0 if none); a BAD_REQUEST ApiError if they contradict themselves. Tornado
    would refuse the same requests, but with a bare 400 and no JSON."""
    lengths = headers.get_list("Content-Length")
    if not lengths:
        return 0
    if "Transfer-Encoding" in headers:
        raise ApiError(ErrorKind.BAD_REQUEST, "a request may not have both Content-Length and Transfer-Encoding")
    values = {value.strip() for value in ",".join(lengths).split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ApiError(ErrorKind.BAD_REQUEST, "the Content-Length header is not one whole number")
    return int(values.pop())


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request: action, user, status, duration. Never the body, so never a token. Health checks
    (health.py) at DEBUG: a balancer asks every few seconds."""
    action, user = getattr(handler, "log_action", None), getattr(handler, "log_user", None)
    level = logging.DEBUG if getattr(handler, "quiet", False) else logging.INFO
    log.log(level, "request action=%s user=%s status=%d duration_ms=%.1f", action or "-", user or "-",
            handler.get_status(), handler.request.request_time() * 1000)
