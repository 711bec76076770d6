"""The HTTPS client for the workerctl API.

It verifies the server's certificate and host name against the configured CA, keeps one connection alive
across calls, sends the token in the Authorization header, and turns every failure into a CliError with one
clear sentence and the exit status that says what kind of failure it was.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from workerctl.cli.exit_status import CliError, ExitStatus, for_http_status
from workerctl.cli.settings import ClientSettings

_TIMEOUT_SECONDS = 30.0
_FIRST_RETRY_PAUSE = 0.1
_LONGEST_RETRY_PAUSE = 2.0


class ApiClient:
    def __init__(self, settings: ClientSettings, timeout: float = _TIMEOUT_SECONDS,
                 retry_seconds: float = 0.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        parts = urlsplit(settings.server)
        self._host = parts.hostname or ""
        self._port = parts.port or 443
        self._context = self._tls_context()
        self._connection: http.client.HTTPSConnection | None = None
        self._reused = False  # whether the last request went over a kept-alive connection

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=str(self.settings.ca))
        except (OSError, ssl.SSLError) as error:
            raise CliError(ExitStatus.CONFIG, f"cannot use the CA certificate {self.settings.ca}: "
                                              f"{getattr(error, 'strerror', None) or error}") from None
        if self.settings.cert is not None:
            try:
                context.load_cert_chain(self.settings.cert, self.settings.key)
            except (OSError, ssl.SSLError) as error:
                key = f" with the key {self.settings.key}" if self.settings.key else ""
                raise CliError(ExitStatus.CONFIG, f"cannot use the client certificate {self.settings.cert}{key}: "
                                                  f"{getattr(error, 'strerror', None) or error}") from None
        return context

    def call(self, action: str, *, safe_to_repeat: bool = False, **fields: Any) -> dict[str, Any]:
        """Send one API request; the answer's JSON object, or CliError. A request `safe_to_repeat` is sent again,
        with growing pauses, while the server is unreachable or unavailable, up to `retry_seconds`."""
        deadline = time.monotonic() + (self.retry_seconds if safe_to_repeat else 0.0)
        pause = _FIRST_RETRY_PAUSE
        while True:
            try:
                return self._call_once(action, fields)
            except CliError as error:
                if not error.retryable or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_RETRY_PAUSE)

    def _call_once(self, action: str, fields: dict[str, Any]) -> dict[str, Any]:
        response = self._send(action, fields, extra_seconds=float(fields.get("wait") or 0))
        body = self._read(response.read)
        if response.status != 200:
            raise self._refusal(response.status, body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise CliError(ExitStatus.SOFTWARE, "the server's answer is not JSON; is this a workerctl server?") \
                from None
        if not isinstance(answer, dict):
            raise CliError(ExitStatus.SOFTWARE, "the server's answer is not a JSON object")
        return answer

    def _send(self, action: str, fields: dict[str, Any], extra_seconds: float) -> http.client.HTTPResponse:
        body = json.dumps({"action": action, **{k: v for k, v in fields.items() if v is not None}})
        headers = {"Content-Type": "application/json"}
        if self.settings.token is not None:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        for attempt in (1, 2):
            connection = self._connect(extra_seconds)
            try:
                connection.request("POST", "/", body=body, headers=headers)
                return connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                # A kept-alive connection the server has since closed: try once more on a fresh one.
                self.close()
                if attempt == 2 or not self._reused:
                    raise self._unreachable(error) from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise self._unreachable(error) from None
        raise AssertionError("unreachable")

    def _connect(self, extra_seconds: float) -> http.client.HTTPSConnection:
        self._reused = self._connection is not None
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(self._host, self._port, context=self._context)
        self._connection.timeout = self.timeout + extra_seconds
        if self._connection.sock is not None:
            self._connection.sock.settimeout(self._connection.timeout)
        return self._connection

    def _read(self, read: Any) -> bytes:
        try:
            return read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise self._unreachable(error) from None

    def _refusal(self, status: int, body: bytes) -> CliError:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = f"the server answered HTTP {status}"
        return CliError(for_http_status(status), str(message), retryable=status == 503)

    def _unreachable(self, error: BaseException) -> CliError:
        where = self.settings.server
        if isinstance(error, ssl.SSLCertVerificationError):
            return CliError(ExitStatus.UNAVAILABLE, f"the certificate of {where} was refused: "
                                                    f"{error.verify_message} (CA: {self.settings.ca})")
        if isinstance(error, socket.timeout):
            return CliError(ExitStatus.UNAVAILABLE, f"{where} did not answer in time")
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return CliError(ExitStatus.UNAVAILABLE, f"cannot reach {where}: {reason}", retryable=True)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
