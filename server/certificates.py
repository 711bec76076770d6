"""Minting a fresh certificate authority and a server certificate it signs (`workerctl certs`).

The CA's private key lives only in memory: once the server certificate is signed it is dropped, so nobody can
sign another certificate with it, and re-minting makes a new CA that clients must be given again.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from workerctl.store.atomic_write import write_atomically

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"

# Starting the validity an hour back tolerates a client whose clock runs a little behind the minting host's.
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class MintedCertificates:
    """Where mint_certificates wrote the CA certificate, the server certificate and the server's private key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def mint_certificates(out_dir: Path, hosts: Sequence[str], days: int = 7300) -> MintedCertificates:
    """Write a new CA certificate and a server certificate for `hosts` (names or IP addresses) into `out_dir`.

    The server's key is written unencrypted with mode 0600; the CA's key is not written at all.
    """
    if isinstance(hosts, str):
        raise TypeError("hosts must be a sequence of host names, not a single string")
    if not hosts:
        raise ValueError("A certificate needs at least one host name or IP address.")
    if any(not host.strip() for host in hosts):
        raise ValueError("A host name or IP address must not be empty.")
    if days < 1:
        raise ValueError(f"A certificate must be valid for at least 1 day, not {days}.")

    not_before = datetime.datetime.now(datetime.timezone.utc) - _BACKDATE
    not_after = not_before + _BACKDATE + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "workerctl"),
        x509.NameAttribute(NameOID.COMMON_NAME, "workerctl CA"),
    ])
    ca_key_id = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_key_id, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "workerctl"),
            x509.NameAttribute(NameOID.COMMON_NAME, "workerctl server"),  # clients check the SAN, not this
        ]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    minted = MintedCertificates(
        ca_cert=out_dir / CA_FILE, server_cert=out_dir / SERVER_CERT_FILE, server_key=out_dir / SERVER_KEY_FILE
    )
    # Each file is replaced atomically, but not the three together: an interrupted re-mint must be run again.
    write_atomically(
        minted.server_key,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        mode=0o600,
    )
    write_atomically(minted.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    write_atomically(minted.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return minted


def _key_usage(**usages: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )
    flags.update(usages)
    return x509.KeyUsage(**flags)


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    unique_hosts = dict.fromkeys(host.strip() for host in hosts)  # drop repeats, keep the order
    return [_general_name(host) for host in unique_hosts]


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return x509.DNSName(host)
    except ValueError:
        raise ValueError(f"{host!r} is neither an IP address nor an ASCII host name (try its xn-- form).") from None
