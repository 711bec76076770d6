"""A real redis-server for the tests (Debian's package): on a free loopback port, with a password and a data
directory of its own, so that concurrent runs share nothing. Started with the append-only file on, as the
store needs in production (docs/architecture.md)."""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from facilities import missing_module, needs

_START_ATTEMPTS = 5


def redis_problem() -> str | None:
    """Why no test of Redis can run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (Debian's redis-server package; .ci/run installs it)"
    return missing_module("redis", "pip install -e '.[test]'")


def redis_server_binary() -> str:
    needs("redis", redis_problem())
    path = shutil.which("redis-server")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process; `restart` brings it back on the same port and data directory."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.password = secrets.token_urlsafe(16)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        # redis-server cannot be handed a bound socket: pick a free port and try another if it was taken meanwhile.
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            if self._start():
                return
        pytest.fail(f"redis-server did not start: {self.log()[-2000:]}")

    def url(self, prefix: str | None = None, user: str = "", password: str | None = None, **options: str) -> str:
        query = {**({"prefix": prefix} if prefix is not None else {}), **options}
        tail = "?" + "&".join(f"{name}={value}" for name, value in query.items()) if query else ""
        return f"redis://{user}:{self.password if password is None else password}@127.0.0.1:{self.port}/0{tail}"

    def add_tls_port(self) -> int:
        """Listen for TLS on a free port too (the server must have been given its certificate); the port."""
        import redis
        with self.client() as client:
            for _ in range(_START_ATTEMPTS):
                port = free_port()
                try:
                    client.config_set("tls-port", port)
                    return port
                except redis.ResponseError:  # taken meanwhile
                    continue
        pytest.fail("redis-server found no free port for TLS")

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self):  # noqa: ANN201 - a redis.Redis; redis is imported only once the server is known to run
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def _start(self) -> bool:
        """Start on self.port; False if the port was taken."""
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--requirepass", self.password, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--logfile", "redis.log", "--daemonize", "no", *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "Address already in use" in self.log():
                    return False
                pytest.fail(f"redis-server exited with {self.process.returncode}: {self.log()[-2000:]}")
            if self._answers():
                return True
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server did not answer within 20 s: {self.log()[-2000:]}")

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except Exception:  # noqa: BLE001 - not up yet, whatever the error
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        if not self._start():
            pytest.fail(f"port {self.port} was taken while redis-server was down")


def start_tls_redis(directory: Path) -> tuple[RedisServer, int, Path]:
    """A redis-server that also listens for TLS, its certificate signed by a CA of its own: the server, its TLS
    port and the CA's certificate (for a URL's ssl_ca_certs)."""
    import trustme
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    directory.mkdir(parents=True, exist_ok=True)
    ca, chain, key = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    certificate.cert_chain_pems[0].write_to_path(str(chain))
    certificate.private_key_pem.write_to_path(str(key))
    server = RedisServer(directory / "redis", "--tls-cert-file", str(chain), "--tls-key-file", str(key),
                         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    try:
        return server, server.add_tls_port(), ca
    except BaseException:
        server.stop()
        raise
