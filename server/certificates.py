"""Minting a certificate authority, the server certificate it signs, and client certificates naming users
(`workerctl certs`); renewing the server certificate from the same CA (`workerctl certs renew`), so clients
keep their ca.pem.

The CA's private key is kept beside its certificate (mode 0600) to sign client certificates later; whoever
holds it can sign any certificate this CA vouches for, so it can be moved offline between uses.
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
from workerctl.store.users import USER_NAME_PATTERN

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"

# Starting the validity an hour back tolerates a client whose clock runs a little behind the minting host's.
_BACKDATE = datetime.timedelta(hours=1)
_ORGANIZATION = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "workerctl")


@dataclass(frozen=True)
class MintedCertificates:
    """Where mint_certificates wrote the CA's certificate and key and the server's certificate and key."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class MintedClientCertificate:
    """Where mint_client_certificate wrote a user's certificate and its private key."""

    cert: Path
    key: Path


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise ValueError(f"A certificate must be valid for at least 1 day, not {days}.")
    not_before = datetime.datetime.now(datetime.timezone.utc) - _BACKDATE
    return not_before, not_before + _BACKDATE + datetime.timedelta(days=days)


def mint_certificates(out_dir: Path, hosts: Sequence[str], days: int = 7300) -> MintedCertificates:
    """Write a new CA and a server certificate for `hosts` (names or IP addresses) into `out_dir`, the keys
    unencrypted with mode 0600."""
    _check_hosts(hosts)
    not_before, not_after = _validity(days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([_ORGANIZATION, x509.NameAttribute(NameOID.COMMON_NAME, "workerctl CA")])
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    minted = MintedCertificates(ca_cert=out_dir / CA_FILE, ca_key=out_dir / CA_KEY_FILE,
                                server_cert=out_dir / SERVER_CERT_FILE, server_key=out_dir / SERVER_KEY_FILE)
    # Each file is replaced atomically, but not the set: an interrupted re-mint must be run again.
    _write_server_certificate(out_dir, ca_cert, ca_key, hosts, not_before, not_after)
    _write_key(minted.ca_key, ca_key)
    write_atomically(minted.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return minted


def renew_server_certificate(ca_dir: Path, hosts: Sequence[str] | None = None, days: int = 7300) -> Path:
    """Write a new server certificate and key into `ca_dir`, signed by the CA there, for `hosts` (by default
    those of the certificate it replaces), valid for `days` but not past the CA; the path of the certificate.
    ValueError if the CA's key is not there; OSError if the files cannot be read or written."""
    ca_dir = Path(ca_dir)
    ca_cert, ca_key = _load_ca(ca_dir)
    if hosts is None:
        hosts = _hosts_of(ca_dir / SERVER_CERT_FILE)
    _check_hosts(hosts)
    not_before, not_after = _validity(days)
    return _write_server_certificate(ca_dir, ca_cert, ca_key, hosts, not_before,
                                     min(not_after, ca_cert.not_valid_after_utc))


def _write_server_certificate(out_dir: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                              hosts: Sequence[str], not_before: datetime.datetime,
                              not_after: datetime.datetime) -> Path:
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _sign_leaf(
        ca_cert, ca_key, server_key, "workerctl server",  # clients check the SAN, not the common name
        _key_usage(digital_signature=True, key_encipherment=True), ExtendedKeyUsageOID.SERVER_AUTH,
        not_before, not_after, x509.SubjectAlternativeName(_general_names(hosts)))
    # The key first: a server restarted between the two writes fails to start rather than serve a mismatch.
    _write_key(out_dir / SERVER_KEY_FILE, server_key)
    write_atomically(out_dir / SERVER_CERT_FILE, server_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return out_dir / SERVER_CERT_FILE


def _check_hosts(hosts: Sequence[str]) -> None:
    if isinstance(hosts, str):
        raise TypeError("hosts must be a sequence of host names, not a single string")
    if not hosts:
        raise ValueError("A certificate needs at least one host name or IP address.")
    if any(not host.strip() for host in hosts):
        raise ValueError("A host name or IP address must not be empty.")
    _general_names(hosts)  # each a name or an address, before anything is written


def _hosts_of(server_cert: Path) -> list[str]:
    """The host names and addresses a server certificate names."""
    try:
        certificate = x509.load_pem_x509_certificate(server_cert.read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except FileNotFoundError:
        raise ValueError(f"there is no {server_cert} to renew: give the host names with --hosts") from None
    except (ValueError, x509.ExtensionNotFound):
        raise ValueError(f"{server_cert} names no hosts: give them with --hosts") from None
    return [str(name.value) for name in names]


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in `ca_dir`; ValueError if the key is not there or not a workerctl CA's."""
    if not (ca_dir / CA_KEY_FILE).exists():
        raise ValueError(f"{ca_dir} has no {CA_KEY_FILE}, the key of the CA that signs certificates: "
                         f"mint one with `workerctl certs --out {ca_dir}`.")
    ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_FILE).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_dir / CA_KEY_FILE} is not the key of a workerctl CA.")
    return ca_cert, ca_key


def mint_client_certificate(ca_dir: Path, user: str, days: int = 365) -> MintedClientCertificate:
    """Sign a certificate naming `user` (its common name) with the CA in `ca_dir`, and write it and its key there
    as client-USER.pem and client-USER-key.pem. ValueError if the CA's key is not there or `user` is not a valid
    user name; OSError if the files cannot be read or written."""
    if not USER_NAME_PATTERN.fullmatch(user):
        raise ValueError(f"{user!r} is not a user name: use 1 to 64 letters, digits, '_', '.' or '-', starting "
                         "with a letter or digit.")
    not_before, not_after = _validity(days)
    ca_dir = Path(ca_dir)
    ca_cert, ca_key = _load_ca(ca_dir)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _sign_leaf(ca_cert, ca_key, client_key, user, _key_usage(digital_signature=True),
                             ExtendedKeyUsageOID.CLIENT_AUTH, not_before, min(not_after, ca_cert.not_valid_after_utc))
    minted = MintedClientCertificate(cert=ca_dir / f"client-{user}.pem", key=ca_dir / f"client-{user}-key.pem")
    _write_key(minted.key, client_key)
    write_atomically(minted.cert, client_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return minted


def _sign_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey,
               common_name: str, usage: x509.KeyUsage, purpose: x509.ObjectIdentifier, not_before: datetime.datetime,
               not_after: datetime.datetime, *extensions: x509.ExtensionType) -> x509.Certificate:
    """A certificate for `key`, naming `common_name`, for one `purpose` (server or client), signed by the CA."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([_ORGANIZATION, x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_atomically(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)


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
