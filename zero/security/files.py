"""The files of a `--tls-dir`: their names, the checks that they are usable, and loading
them into a `TlsConfig` (the PEM bytes and the gRPC credentials built from them).

    DIR/ca.crt     the cluster's CA: the only issuer whose certificates are accepted
    DIR/node.crt   this process's certificate (chain allowed), signed by that CA
    DIR/node.key   its private key (unencrypted PEM; keep it 0600)
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import grpc

from zero.security.certs import CertInfo, TlsError, cert_infos, check_dates, format_utc

__all__ = ["CA_FILE", "CERT_FILE", "KEY_FILE", "TLS_FILES", "MAX_PEM_BYTES", "FileSignature", "TlsConfig",
           "check_tls_dir", "load_tls", "tls_signature"]

CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "node.crt", "node.key"
TLS_FILES = (CA_FILE, CERT_FILE, KEY_FILE)
MAX_PEM_BYTES = 1 << 20

# (mtime ns, size, inode, device) of each of TLS_FILES; None for a missing file.
FileSignature = tuple[tuple[int, int, int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The PEM bytes of one --tls-dir (the key is never printed), and what node.crt says."""

    dir: str
    ca: bytes = field(repr=False)
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    chain: tuple[CertInfo, ...] = field(default=(), repr=False)  # node.crt's certificates

    @property
    def serial(self) -> int:
        return self.chain[0].serial if self.chain else 0

    @property
    def not_after(self) -> str:
        return format_utc(self.chain[0].not_after) if self.chain else ""

    @property
    def expires(self) -> datetime.datetime | None:
        """The earliest notAfter of node.crt's certificates."""
        return min(c.not_after for c in self.chain) if self.chain else None

    def same_files(self, other: TlsConfig) -> bool:
        return (self.ca, self.cert, self.key) == (other.ca, other.cert, other.key)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: a client certificate signed by the CA is required."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """The CA to check servers with, and this node's certificate to present."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def check_tls_dir(path: str) -> list[str]:
    """The problems with `path` as a --tls-dir (empty: usable as far as files go)."""
    if not os.path.isdir(path):
        return [f"{path} is not a directory"]
    problems = []
    for name in TLS_FILES:
        f = os.path.join(path, name)
        if not os.path.isfile(f):
            problems.append(f"{f} is missing")
        elif not os.access(f, os.R_OK):
            problems.append(f"{f} is not readable")
    return problems


def load_tls(path: str, *, now: datetime.datetime | None = None, dates: bool = True) -> TlsConfig:
    """Read DIR/ca.crt, node.crt and node.key; TlsError names a missing, unreadable or
    non-PEM file, and (`dates`) an expired or not-yet-valid certificate with its dates.
    (gRPC checks that the key matches the certificate when it first uses them;
    `ServerTls` checks it at once.)"""
    problems = check_tls_dir(path)
    if problems:
        raise TlsError(f"--tls-dir {path}: " + "; ".join(problems) + f" (expected {', '.join(TLS_FILES)})")
    data: dict[str, bytes] = {}
    for name, marker in ((CA_FILE, b"-----BEGIN CERTIFICATE-----"), (CERT_FILE, b"-----BEGIN CERTIFICATE-----"),
                         (KEY_FILE, b"PRIVATE KEY-----")):
        f = os.path.join(path, name)
        try:
            with open(f, "rb") as fh:
                raw = fh.read(MAX_PEM_BYTES + 1)
        except OSError as e:
            raise TlsError(f"cannot read {f}: {e.strerror or e}") from None
        if len(raw) > MAX_PEM_BYTES:
            raise TlsError(f"{f} is over {MAX_PEM_BYTES} bytes: not a PEM certificate or key")
        if marker not in raw:
            raise TlsError(f"{f} is not PEM (no '{marker.decode()}' block)")
        data[name] = raw
    ca = cert_infos(data[CA_FILE], os.path.join(path, CA_FILE))
    chain = cert_infos(data[CERT_FILE], os.path.join(path, CERT_FILE))
    if dates:
        check_dates(ca, chain, now)
    return TlsConfig(dir=path, ca=data[CA_FILE], cert=data[CERT_FILE], key=data[KEY_FILE], chain=tuple(chain))


def tls_signature(path: str) -> FileSignature:
    """(mtime, size, inode, device) of each file of a --tls-dir, following symlinks (a
    Kubernetes secret's atomic swap changes them all); None for a file that is missing."""
    out: list[tuple[int, int, int, int] | None] = []
    for name in TLS_FILES:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
    return tuple(out)
