"""Throwaway TLS material and a user for the benchmark's servers, minted with workerctl's own tools."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from workerctl.server.certificates import mint_certificates
from workerctl.store.users import add_user

BENCH_USER = "bench"


@dataclass(frozen=True)
class Credentials:
    ca: Path
    cert: Path
    key: Path
    users: Path
    token: str
    token_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_credentials(directory: Path) -> Credentials:
    """A CA and server certificate for 127.0.0.1, and a users file with one user, all under `directory`."""
    minted = mint_certificates(directory / "tls", ["127.0.0.1"])
    users = directory / "users.toml"
    token = add_user(users, BENCH_USER)
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return Credentials(minted.ca_cert, minted.server_cert, minted.server_key, users, token, token_file)
