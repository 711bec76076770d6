"""Minting a CA and a server certificate: their extensions, their files, and real TLS handshakes against them."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from workerctl import dev_material
from workerctl.server.certificates import (
    MintedCertificates,
    mint_certificates,
    mint_client_certificate,
    renew_server_certificate,
)

HOSTS = ["localhost", "127.0.0.1", "::1"]


@contextlib.contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """Serve TLS on 127.0.0.1 from a thread, answering b"ok" after each handshake; yield the port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the loop notices `stopping` without a wake-up connection
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                try:
                    with context.wrap_socket(connection, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass  # a client that refused the certificate hangs up mid-handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


def handshake(port: int, ca: Path, server_hostname: str) -> bytes:
    """Connect to 127.0.0.1 as a client that trusts only `ca` and checks the certificate for `server_hostname`."""
    context = ssl.create_default_context(cafile=str(ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default: catches a CA that only 3.11 accepts
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(2)


@pytest.fixture
def minted(tmp_path: Path) -> MintedCertificates:
    return mint_certificates(tmp_path / "certs", HOSTS)


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def test_writes_the_four_files_keys_private(minted: MintedCertificates) -> None:
    directory = minted.ca_cert.parent
    assert minted == MintedCertificates(
        directory / "ca.pem", directory / "ca-key.pem", directory / "server.pem", directory / "server-key.pem"
    )
    assert sorted(p.name for p in directory.iterdir()) == ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]
    for key in (minted.server_key, minted.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8
    for public in (minted.ca_cert, minted.server_cert):
        assert "PRIVATE KEY" not in public.read_text()
        assert public.read_text().count("BEGIN CERTIFICATE") == 1


def test_the_ca_certificate(minted: MintedCertificates) -> None:
    ca = x509.load_pem_x509_certificate(minted.ca_cert.read_bytes())
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    constraints = extension(ca, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca and constraints.value.path_length == 0
    usage = extension(ca, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    key_id = extension(ca, x509.SubjectKeyIdentifier).value
    assert key_id == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)


def test_the_server_certificate(minted: MintedCertificates) -> None:
    ca = x509.load_pem_x509_certificate(minted.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(minted.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    constraints = extension(server, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = extension(server, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert list(extension(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = extension(server, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    ]
    authority_key_id = extension(server, x509.AuthorityKeyIdentifier).value
    assert authority_key_id.key_identifier == extension(ca, x509.SubjectKeyIdentifier).value.digest
    assert isinstance(server.signature_hash_algorithm, hashes.SHA256)


def test_validity_starts_an_hour_back_and_lasts_the_given_days(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    minted = mint_certificates(tmp_path, ["localhost"], days=30)
    for path in (minted.ca_cert, minted.server_cert):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        assert abs(start - (now - datetime.timedelta(hours=1))) < datetime.timedelta(minutes=1)
        assert abs(end - (now + datetime.timedelta(days=30))) < datetime.timedelta(minutes=1)


@pytest.mark.parametrize("server_hostname", HOSTS)
def test_a_client_trusting_the_ca_completes_a_handshake(
    minted: MintedCertificates, server_hostname: str
) -> None:
    with tls_server(minted.server_cert, minted.server_key) as port:
        assert handshake(port, minted.ca_cert, server_hostname) == b"ok"


def test_a_renewed_server_certificate_is_new_and_trusted_through_the_same_ca(minted: MintedCertificates) -> None:
    old_cert, old_key, ca = minted.server_cert.read_bytes(), minted.server_key.read_bytes(), minted.ca_cert.read_bytes()
    assert renew_server_certificate(minted.ca_cert.parent, days=30) == minted.server_cert
    assert minted.server_cert.read_bytes() != old_cert and minted.server_key.read_bytes() != old_key
    assert minted.ca_cert.read_bytes() == ca and stat.S_IMODE(minted.server_key.stat().st_mode) == 0o600
    renewed = x509.load_pem_x509_certificate(minted.server_cert.read_bytes())
    assert extension(renewed, x509.SubjectAlternativeName).value == extension(
        x509.load_pem_x509_certificate(old_cert), x509.SubjectAlternativeName).value  # the same hosts
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc == datetime.timedelta(days=30, hours=1)
    with tls_server(minted.server_cert, minted.server_key) as port:
        assert handshake(port, minted.ca_cert, "localhost") == b"ok"


def test_renewing_with_other_hosts_and_without_a_ca_key(minted: MintedCertificates, tmp_path: Path) -> None:
    renew_server_certificate(minted.ca_cert.parent, ["renewed.example"])
    with tls_server(minted.server_cert, minted.server_key) as port:
        assert handshake(port, minted.ca_cert, "renewed.example") == b"ok"
    with pytest.raises(ValueError, match="has no ca-key.pem"):
        renew_server_certificate(tmp_path)


def test_a_strict_rfc_5280_verifier_accepts_the_chain(minted: MintedCertificates) -> None:
    ca = x509.load_pem_x509_certificate(minted.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(minted.server_cert.read_bytes())
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("::1"))):
        verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
        assert verifier.verify(server, []) == [server, ca]


def test_a_client_refuses_another_hostname(minted: MintedCertificates) -> None:
    with tls_server(minted.server_cert, minted.server_key) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            handshake(port, minted.ca_cert, "example.com")


def test_a_client_refuses_a_certificate_from_another_ca(tmp_path: Path) -> None:
    first = mint_certificates(tmp_path / "first", ["localhost"])
    second = mint_certificates(tmp_path / "second", ["localhost"])
    with tls_server(first.server_cert, first.server_key) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, second.ca_cert, "localhost")


def test_re_minting_replaces_every_file_and_keeps_the_key_private(tmp_path: Path) -> None:
    first = mint_certificates(tmp_path, ["localhost"])
    old_ca = first.ca_cert.read_bytes()
    first.server_key.chmod(0o644)
    first.ca_key.chmod(0o644)
    second = mint_certificates(tmp_path, ["localhost"])
    assert second == first
    assert second.ca_cert.read_bytes() != old_ca
    assert stat.S_IMODE(second.server_key.stat().st_mode) == stat.S_IMODE(second.ca_key.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]


@pytest.mark.parametrize(
    ("hosts", "days", "message"),
    [
        ([], 7300, "at least one host"),
        (["localhost", " "], 7300, "must not be empty"),
        (["bücher.example"], 7300, "neither an IP address nor an ASCII host name"),
        (["localhost"], 0, "at least 1 day"),
        (["localhost"], -5, "at least 1 day"),
    ],
)
def test_bad_arguments_raise_value_error_and_write_nothing(
    tmp_path: Path, hosts: list[str], days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mint_certificates(tmp_path / "certs", hosts, days=days)
    assert not (tmp_path / "certs").exists()


def test_a_single_string_is_not_taken_for_a_list_of_hosts(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        mint_certificates(tmp_path, "localhost")


def test_a_client_certificate_names_the_user_for_client_authentication(minted: MintedCertificates) -> None:
    client = mint_client_certificate(minted.ca_cert.parent, "alice.b", days=30)
    assert (client.cert.name, client.key.name) == ("client-alice.b.pem", "client-alice.b-key.pem")
    assert stat.S_IMODE(client.key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(minted.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(client.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice.b"
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not extension(cert, x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=30, hours=1)


@pytest.mark.parametrize(("user", "message"), [("", "not a user name"), ("bad name", "not a user name"),
                                               ("-x", "not a user name")])
def test_a_client_certificate_needs_a_user_name(minted: MintedCertificates, user: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mint_client_certificate(minted.ca_cert.parent, user)


def test_a_client_certificate_needs_the_ca_key(minted: MintedCertificates) -> None:
    minted.ca_key.unlink()
    with pytest.raises(ValueError, match="has no ca-key.pem"):
        mint_client_certificate(minted.ca_cert.parent, "alice")


# --- The committed development material: these guard the quick start. ---------------------------------------


def test_the_committed_server_certificate_verifies_for_127_0_0_1() -> None:
    with tls_server(dev_material.DEV_SERVER_CERT, dev_material.DEV_SERVER_KEY) as port:
        assert handshake(port, dev_material.DEV_CA, "127.0.0.1") == b"ok"


def test_the_committed_certificates_have_at_least_five_years_left() -> None:
    five_years_from_now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=5 * 366)
    for path in (dev_material.DEV_CA, dev_material.DEV_SERVER_CERT):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        assert cert.not_valid_after_utc > five_years_from_now, f"{path} expires soon: re-mint it"
