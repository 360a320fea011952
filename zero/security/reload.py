"""The certificates `zero run` serves with, on its gRPC port and as HTTPS on its HTTP
port, reloadable without a restart (`ServerTls`).

HTTPS. With `--tls-dir` the HTTP port serves HTTPS with the same node.crt and node.key
(`ServerTls.http_context`, TLS 1.2 or later). A client certificate is optional there, as
Dgraph's default "VERIFYIFGIVEN": a client may present none (Prometheus scraping
/metrics with only `ca_file`, curl --cacert, a browser); one it does present must be
signed by the CA, or the handshake fails. No certificate role applies on HTTP: its pages
are read-only, and Dgraph's verbs that change state (/assign, /moveTablet, /removeNode)
need the admin token (zero/frontdoor/dgraph_http.py). Plain HTTP to it fails.
`zero run --live-addr HOST:PORT` serves /live alone over plain HTTP for probes that
cannot do TLS (off by default).

Reload (`ServerTls.reload`): on SIGHUP, and when the three files change (`zero run`
polls their mtime, size and inode every 2 s and reloads once they have stayed unchanged
for one poll, so a half-written rotation is not picked up; a Kubernetes secret's atomic
symlink swap is one change). The new files are read and checked as at start (PEM,
dates, the key matches node.crt) before anything switches; a bad set is refused with an
error log and zero keeps serving the old certificates (the poller retries only when the
files change again; SIGHUP always retries). After a reload:
- the gRPC port: new connections handshake with the new certificate and trust the new
  ca.crt (`grpc.dynamic_ssl_server_credentials`, whose fetcher gRPC calls per handshake);
- the HTTP port: new connections likewise (an SNI callback on the listening context
  switches each new handshake to the newest context);
- open connections are not cut: TLS checks certificates at the handshake only, so calls
  in flight and open streams go on;
- outbound: channels zero creates after the reload present the new node.crt and trust
  the new ca.crt (peer channels to new peers, forwarding to a new leader address, the
  join call; the channels zero dials data nodes with during moves are all replaced).
  NOT reloaded: a channel already open (to a peer zero, to the leader, the Dgraph HTTP
  verbs' channel to zero's own gRPC port) keeps the credentials it was created with,
  also when it reconnects, until the process restarts (gRPC cannot change a channel's
  credentials, and recreating the peer transport's channels would drop Raft traffic).
  Both certificates are signed by the CA, so peers accept either until the old one
  expires: restart each zero once, one at a time, after a rotation and before the old
  certificate's notAfter (outbound.py logs a warning with that date). A new CA: first
  old + new CA in every ca.crt (and a restart), then the new node certificates.
The reference data node (`zero datanode`) and `zero admin` read the files at start only.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from typing import cast

import grpc

from zero.security.certs import TlsError
from zero.security.files import CA_FILE, CERT_FILE, KEY_FILE, FileSignature, TlsConfig, load_tls, tls_signature

__all__ = ["ServerTls"]


def _http_context(tls: TlsConfig) -> ssl.SSLContext:
    """The HTTPS port's context for `tls`: node.crt/node.key from the files (the ssl
    module loads a chain from files only; ServerTls checks they still hold these bytes),
    client certificates optional but checked against ca.crt when given."""
    cert_file, key_file = os.path.join(tls.dir, CERT_FILE), os.path.join(tls.dir, KEY_FILE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    encrypted = []

    def no_password() -> bytes:  # never OpenSSL's prompt on the terminal
        encrypted.append(True)
        return b""

    try:
        ctx.load_cert_chain(cert_file, key_file, password=no_password)
    except ssl.SSLError as e:
        if encrypted:
            raise TlsError(f"{key_file} is encrypted; zero needs an unencrypted private key") from None
        if "KEY_VALUES_MISMATCH" in str(e):
            raise TlsError(f"{key_file} is not the private key of the certificate in {cert_file}") from None
        raise TlsError(f"{cert_file} and {key_file} are not a usable certificate and key: "
                       f"{e.reason or e}") from None
    except OSError as e:
        raise TlsError(f"cannot read {cert_file} or {key_file}: {e.strerror or e}") from None
    try:
        ctx.load_verify_locations(cadata=tls.ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
        raise TlsError(f"{os.path.join(tls.dir, CA_FILE)} is not a usable CA certificate: "
                       f"{getattr(e, 'reason', None) or e}") from None
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class ServerTls:
    """The certificates `zero run` serves with, reloadable while it runs (the module's
    docstring says what a reload changes). `reload` and `changed` run on the event loop;
    gRPC calls the certificate fetcher from its own threads, hence the lock."""

    LOAD_TRIES = 3  # files changing under the read: try again, then give up

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        sig, config, ctx = self._load()
        self.config = config
        self.http_context = ctx  # the listening context; each handshake switches to _http_current
        self._http_current = ctx
        ctx.sni_callback = self._pick_context
        self._grpc_config = self._grpc_certificates(config)
        self._generation = 0
        self._grpc_generation = 0  # the generation gRPC's fetcher handed over last
        self._loaded_sig = sig
        self._failed_sig: FileSignature | None = None
        self._seen_sig = sig
        self.reloads = 0

    @staticmethod
    def _grpc_certificates(tls: TlsConfig) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(tls.key, tls.cert)], root_certificates=tls.ca)

    def _load(self) -> tuple[FileSignature, TlsConfig, ssl.SSLContext]:
        """Read, check and build, with the files unchanged from before the read to after
        it (else a rotation is being written: try again)."""
        for _ in range(self.LOAD_TRIES):
            sig = tls_signature(self.path)
            config = load_tls(self.path)
            ctx = _http_context(config)
            again = load_tls(self.path, dates=False)
            if sig == tls_signature(self.path) and again.same_files(config):
                return sig, config, ctx
        raise TlsError(f"--tls-dir {self.path}: the files kept changing while they were read; try again")

    # -- serving ------------------------------------------------------------------------------------
    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS (a client certificate of the CA required) whose certificates follow
        `reload` for every new connection."""
        # gRPC's fetcher contract is "a configuration, or None for no change"; the stubs
        # declare only the first.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch_grpc)
        return grpc.dynamic_ssl_server_credentials(self._grpc_config, fetch, require_client_authentication=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For channels created from now on: the current node.crt and ca.crt."""
        return self.config.channel_credentials()

    def _fetch_grpc(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake question: new certificates since the last answer? (None: no)"""
        with self._lock:
            if self._grpc_generation == self._generation:
                return None
            self._grpc_generation = self._generation
            return self._grpc_config

    def _pick_context(self, sslobj: ssl.SSLSocket | ssl.SSLObject, _server_name: str | None,
                      _ctx: ssl.SSLContext) -> None:
        """The SNI callback, called for every HTTPS handshake (with or without SNI)."""
        current = self._http_current
        if current is not self.http_context:
            try:
                sslobj.context = current
            except Exception:  # never fail a handshake here: it goes on with the first certificates
                pass

    # -- reloading ----------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Read the files again; True when new certificates are in use for new connections,
        False when the files are unchanged. TlsError (nothing switched) when they are
        unusable: the old certificates stay."""
        try:
            sig, config, ctx = self._load()
        except TlsError:
            self._failed_sig = tls_signature(self.path)
            raise
        self._loaded_sig = self._seen_sig = sig
        self._failed_sig = None
        if config.same_files(self.config):
            return False
        grpc_config = self._grpc_certificates(config)
        with self._lock:
            self.config = config
            self._grpc_config = grpc_config
            self._generation += 1
        self._http_current = ctx
        self.reloads += 1
        return True

    def changed(self) -> bool:
        """For the poller: the files differ from the loaded ones and stayed the same since
        the previous call (a rotation written in several steps is read when finished);
        files that failed to load are not retried until they change again."""
        sig = tls_signature(self.path)
        settled = sig == self._seen_sig
        self._seen_sig = sig
        return settled and sig != self._loaded_sig and sig != self._failed_sig
