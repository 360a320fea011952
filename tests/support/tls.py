"""A test CA and the certificates zero's TLS tests need (zero/security.py reads a
--tls-dir of ca.crt, node.crt, node.key; the role is the certificate's OU: zero,
datanode, admin). Needs `cryptography` (the [test] extra): test modules call
`pytest.importorskip("cryptography")` before importing this.

Certificates are EC P-256, for the names localhost and 127.0.0.1, usable by servers and
clients alike; they are valid from 5 minutes ago for a day unless the test gives dates
(an expired or not-yet-valid one). The CA itself is valid from a day ago for 30 days."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "Leaf", "tls_dir", "replace_file", "served_serial"]

UTC = datetime.timezone.utc


class Leaf(NamedTuple):
    """A certificate the CA issued: PEM certificate, PEM key (PKCS#8), serial number."""
    cert: bytes
    key: bytes
    serial: int


class CA:
    def __init__(self, name: str = "zero test CA") -> None:
        now = datetime.datetime.now(UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = _pem(self.cert)

    def issue(self, cn: str, ou: str | None, *, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> Leaf:
        """A certificate for a node named `cn` with role `ou` (None: no OU, no role)."""
        now = datetime.datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder().subject_name(_name(cn, ou)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
                .not_valid_after(not_after or now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return Leaf(_pem(cert), _pem(key), int(serial))

    def write(self, directory: Path, cn: str, ou: str | None, *, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> Leaf:
        """Issue a certificate and write the --tls-dir `directory` (this CA's ca.crt and
        the new node.crt and node.key), replacing what is there; returns the certificate."""
        leaf = self.issue(cn, ou, not_before=not_before, not_after=not_after)
        tls_dir(directory, self.pem, leaf.cert, leaf.key)
        return leaf


def tls_dir(directory: Path, ca_pem: bytes, cert: bytes, key: bytes) -> str:
    """Write ca.crt (`ca_pem`: one CA or a bundle), node.key and node.crt into
    `directory`, each replaced atomically; returns the directory as a string."""
    directory.mkdir(parents=True, exist_ok=True)
    replace_file(directory / "ca.crt", ca_pem)
    replace_file(directory / "node.key", key)
    replace_file(directory / "node.crt", cert)
    (directory / "node.key").chmod(0o600)
    return str(directory)


def replace_file(path: Path, data: bytes) -> None:
    """As an operator's tooling should: a temporary file renamed over the old one, so a
    reader (zero's --tls-dir watch) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def served_serial(port: int, ca_pem: bytes, client: tuple[str, str] | None = None, alpn: bool = False) -> int:
    """The serial of the certificate a new TLS connection to 127.0.0.1:`port` is shown,
    checked against `ca_pem` for the name localhost. `client`: (node.crt, node.key) to
    present; `alpn`: offer h2, as gRPC clients do."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        ctx.load_cert_chain(*client)
    if alpn:
        ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attrs)


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
