"""The server's TLS context, made by the front end and checked by the launcher before anything starts."""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(cert: Path, key: Path, client_ca: Path | None = None,
                require_client_cert: bool = False) -> ssl.SSLContext:
    """The standard library's server defaults, TLS 1.2 at least; ssl.SSLError or OSError if unusable. With a
    `client_ca`, clients are asked for a certificate it signed, and refused if they offer another."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context
