"""Mutual TLS and roles (SPEC "Processes, ports, CLI": `--tls-dir`; docs/DESIGN.md "Security").

`--tls-dir DIR` holds three PEM files, the same names on every zero, data node and admin
machine:

    DIR/ca.crt     the cluster's CA: the only issuer whose certificates are accepted
    DIR/node.crt   this process's certificate (chain allowed), signed by that CA
    DIR/node.key   its private key (unencrypted PEM; keep it 0600)

With it every gRPC connection is mutual TLS: a server requires a client certificate
signed by the CA (a plaintext client, or one without a certificate, fails the handshake)
and a client checks the server's certificate against the CA and the name it dialled
(node.crt needs a subjectAltName for every host name or IP it is reached by).

Roles come from the client certificate's subject OU (organizationalUnitName): `zero`,
`datanode` or `admin` (several OUs give several roles; other OUs give none).

| service               | roles allowed              |
| ---                   | ---                        |
| zero.v1.Raft          | zero                       |
| zero.v1.ZeroAdmin     | admin, zero (a follower forwards an admin's call with its own certificate) |
| zero.v1.Zero          | datanode, admin, zero      |
| zero.v1.DataNode      | zero, datanode             |
| grpc health, reflection | any certificate of the CA |

A forced tablet assignment (`Zero.ShouldServe` with `force`) needs the admin or zero role
as well as the admin token. The admin token (`--admin-token`) is checked on top of the
role, by zero/frontdoor/server.py's `check_admin`, so an operator can keep both factors.
Without `--tls-dir` nothing here applies: connections are plaintext and roles unchecked.

Certificate dates. `load_tls` refuses a certificate that is expired or not yet valid,
with one line naming the file and its notBefore/notAfter dates (`zero run` exits 1 with
it, `zero datanode` and `zero admin` refuse it alike): every certificate in node.crt
must be valid now; ca.crt needs at least one valid certificate (a bundle holding an old
and a new CA during a CA change may keep the expired old one). The dates are read with
the small DER reader below: `cryptography` is not a runtime dependency.

HTTPS (`zero run`). With `--tls-dir` the HTTP port serves HTTPS with the same node.crt
and node.key (`ServerTls.http_context`, TLS 1.2 or later). A client certificate is
optional there, as Dgraph's default "VERIFYIFGIVEN": a client may present none
(Prometheus scraping /metrics with only `ca_file`, curl --cacert, a browser); one it does
present must be signed by the CA, or the handshake fails. No certificate role applies
on HTTP: its pages are read-only, and Dgraph's verbs that change state (/assign,
/moveTablet, /removeNode) need the admin token (zero/frontdoor/dgraph_http.py). Plain HTTP to it
fails. `zero run --live-addr HOST:PORT` serves /live alone over plain HTTP for
probes that cannot do TLS (off by default).

Reload without restart (`ServerTls.reload`): on SIGHUP, and when the three files change
(`zero run` polls their mtime, size and inode every 2 s and reloads once they have stayed
unchanged for one poll, so a half-written rotation is not picked up; a Kubernetes secret's
atomic symlink swap is one change). The new files are read and checked as at start
(PEM, dates, the key matches node.crt) before anything switches; a bad set is refused
with an error log and zero keeps serving the old certificates (the poller retries only
when the files change again; SIGHUP always retries). After a reload:
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
  credentials, and recreating the peer transport's channels would drop Raft traffic). Both certificates are signed by the CA, so peers
  accept either until the old one expires: restart each zero once, one at a time, after
  a rotation and before the old certificate's notAfter (zero/app.py logs a warning with
  that date). A new CA: first old + new CA in every ca.crt (and a restart), then the new
  node certificates.
The reference data node (`zero datanode`) and `zero admin` read the files at start only.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import inspect
import os
import re
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]

from zero.errors import PermissionDeniedError, UnauthenticatedError, ZeroError

__all__ = [
    "TLS_FILES",
    "ROLES",
    "SERVICE_ROLES",
    "TlsConfig",
    "TlsError",
    "CertInfo",
    "cert_infos",
    "check_dates",
    "format_utc",
    "load_tls",
    "ServerTls",
    "tls_signature",
    "check_tls_dir",
    "subject_ous",
    "peer_roles",
    "authorize",
    "require_roles",
    "RoleInterceptor",
]

CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "node.crt", "node.key"
TLS_FILES = (CA_FILE, CERT_FILE, KEY_FILE)
ROLES = frozenset({"zero", "datanode", "admin"})
ANY = frozenset({"*"})  # any certificate the CA signed
SERVICE_ROLES: dict[str, frozenset[str]] = {
    "zero.v1.Raft": frozenset({"zero"}),
    "zero.v1.ZeroAdmin": frozenset({"admin", "zero"}),
    "zero.v1.Zero": frozenset({"datanode", "admin", "zero"}),
    "zero.v1.DataNode": frozenset({"zero", "datanode"}),
    "grpc.health.v1.Health": ANY,
    "grpc.reflection.v1alpha.ServerReflection": ANY,
    "grpc.reflection.v1.ServerReflection": ANY,
}
FORCE_ROLES = frozenset({"admin", "zero"})
MAX_PEM_BYTES = 1 << 20


class TlsError(ZeroError):
    """The TLS directory is unusable; the message names the file and why."""

    code = "FAILED_PRECONDITION"


# -- certificate dates -----------------------------------------------------------------------------
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def format_utc(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


_utc = format_utc


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What zero reads of one certificate: enough for the date check and the logs."""

    file: str
    index: int  # 0: the first certificate of the file (node.crt's own); chains go on from there
    serial: int
    not_before: datetime.datetime  # timezone-aware, UTC
    not_after: datetime.datetime

    def valid_at(self, now: datetime.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def dates(self) -> str:
        return f"valid from {_utc(self.not_before)} until {_utc(self.not_after)}"

    def where(self, count: int) -> str:
        return self.file if count == 1 else f"certificate {self.index + 1} of {count} in {self.file}"

    def problem(self, now: datetime.datetime, count: int = 1) -> str | None:
        """None when valid at `now`; else one line naming the file and both dates."""
        if now > self.not_after:
            return f"{self.where(count)} has expired: {self.dates()}; it is now {_utc(now)}"
        if now < self.not_before:
            return (f"{self.where(count)} is not valid yet: {self.dates()}; it is now {_utc(now)} "
                    "(check this machine's clock, or the certificate's dates)")
        return None


def _der(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, stop) of the DER element at `pos`: its contents are buf[start:stop]."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = buf[pos], buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> datetime.datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        t = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if t.year >= 2050:
            t = t.replace(year=t.year - 100)
    elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        t = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"validity time with DER tag {tag:#x}")
    return t.replace(tzinfo=datetime.timezone.utc)


def _cert_info(der: bytes, file: str, index: int) -> CertInfo:
    """serialNumber and validity of one X.509 certificate (RFC 5280 4.1)."""
    tag, start, stop = _der(der, 0, len(der))  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _der(der, start, stop)  # TBSCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, s, e = _der(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version
        tag, s, e = _der(der, e, tbs_end)
    if tag != 0x02:
        raise ValueError("no serial number")
    serial = int.from_bytes(der[s:e], "big", signed=True)
    for _ in range(2):  # signature AlgorithmIdentifier, issuer Name
        tag, s, e = _der(der, e, tbs_end)
        if tag != 0x30:
            raise ValueError("malformed certificate")
    tag, vs, ve = _der(der, e, tbs_end)  # Validity
    if tag != 0x30:
        raise ValueError("no validity")
    t1, s1, e1 = _der(der, vs, ve)
    t2, s2, e2 = _der(der, e1, ve)
    return CertInfo(file=file, index=index, serial=serial, not_before=_der_time(t1, der[s1:e1]),
                    not_after=_der_time(t2, der[s2:e2]))


def cert_infos(pem: bytes, file: str) -> list[CertInfo]:
    """Every certificate of a PEM file, in order; TlsError names the file when one cannot
    be read."""
    out = []
    for i, m in enumerate(_PEM_CERT.finditer(pem)):
        try:
            der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
            out.append(_cert_info(der, file, i))
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise TlsError(f"{file}: certificate {i + 1} is not a readable X.509 certificate ({e})") from None
    if not out:
        raise TlsError(f"{file} holds no certificate")
    return out


def check_dates(ca: list[CertInfo], chain: list[CertInfo], now: datetime.datetime | None = None) -> None:
    """TlsError when a certificate of node.crt is expired or not yet valid, or no
    certificate of ca.crt is valid (see the module's docstring)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    for c in chain:
        problem = c.problem(now, len(chain))
        if problem:
            raise TlsError(problem)
    if ca and not any(c.valid_at(now) for c in ca):
        raise TlsError("; ".join(p for c in ca if (p := c.problem(now, len(ca)))))


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
        return _utc(self.chain[0].not_after) if self.chain else ""

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


def tls_signature(path: str) -> tuple[tuple[int, int, int, int] | None, ...]:
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
        self._failed_sig: tuple[Any, ...] | None = None
        self._seen_sig = sig
        self.reloads = 0

    @staticmethod
    def _grpc_certificates(tls: TlsConfig) -> Any:
        return grpc.ssl_server_certificate_configuration([(tls.key, tls.cert)], root_certificates=tls.ca)

    def _load(self) -> tuple[tuple[Any, ...], TlsConfig, ssl.SSLContext]:
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
        return grpc.dynamic_ssl_server_credentials(self._grpc_config, self._fetch_grpc,
                                                   require_client_authentication=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For channels created from now on: the current node.crt and ca.crt."""
        return self.config.channel_credentials()

    def _fetch_grpc(self) -> Any:
        """gRPC's per-handshake question: new certificates since the last answer? (None: no)"""
        with self._lock:
            if self._grpc_generation == self._generation:
                return None
            self._grpc_generation = self._generation
            return self._grpc_config

    def _pick_context(self, sslobj: Any, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
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


# -- roles -------------------------------------------------------------------------------------------
def _split_unescaped(text: str, seps: str) -> list[str]:
    """Split an RFC 4514 string at unescaped separators (a backslash escapes one char)."""
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c in seps:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            h = value[i + 1:i + 3]
            if len(h) == 2 and all(x in "0123456789abcdefABCDEF" for x in h):
                out.append(chr(int(h, 16)))
                i += 3
                continue
            out.append(value[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def subject_ous(subject: str) -> list[str]:
    """The OU values of an RFC 4514 subject as gRPC reports it ("OU=zero,CN=zero1"),
    multi-valued RDNs ("OU=a+OU=b") included."""
    ous = []
    for rdn in _split_unescaped(subject, ","):
        for ava in _split_unescaped(rdn, "+"):
            key, sep, value = ava.partition("=")
            if sep and key.strip().upper() in ("OU", "ORGANIZATIONALUNITNAME", "2.5.4.11"):
                ous.append(_unescape(value.strip()))
    return ous


def peer_roles(context: Any) -> frozenset[str] | None:
    """The roles of the caller's certificate; None when the call did not come over TLS."""
    try:
        auth = context.auth_context() or {}
    except Exception:
        return None
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    roles: set[str] = set()
    for subject in auth.get("x509_subject", ()):
        text = subject.decode("utf-8", "replace") if isinstance(subject, bytes) else str(subject)
        roles.update(ou.strip().lower() for ou in subject_ous(text))
    return frozenset(roles & ROLES)


def _service_of(method: str) -> str:
    return method.lstrip("/").partition("/")[0]


def _describe(roles: Iterable[str]) -> str:
    r = sorted(roles)
    return " or ".join(r) if r else "none"


def authorize(method: str, context: Any) -> None:
    """Raise PermissionDeniedError unless the caller's certificate role may call
    `method` (see the module's table). Calls not over TLS are left to the server's own
    configuration: with --tls-dir a server accepts no other."""
    roles = peer_roles(context)
    if roles is None:
        return
    service = _service_of(method)
    allowed = SERVICE_ROLES.get(service)
    if allowed is None:
        raise PermissionDeniedError(f"{service} is not open to any certificate role")
    if allowed is ANY:
        return
    if not roles & allowed:
        raise PermissionDeniedError(
            f"a certificate with role {_describe(roles)} may not call {service} (allowed: {_describe(allowed)}; "
            "the role is the certificate subject's OU)")


def require_roles(context: Any, allowed: frozenset[str], what: str) -> None:
    """For one request kind inside a service (a forced tablet assignment): PermissionDenied
    unless the TLS caller has one of `allowed`; no-op without TLS."""
    roles = peer_roles(context)
    if roles is not None and not roles & allowed:
        raise PermissionDeniedError(f"{what} needs a certificate with role {_describe(allowed)}, "
                                    f"not {_describe(roles)}")


class RoleInterceptor(grpc.aio.ServerInterceptor):
    """`authorize` for a server without zero's Interceptor (the reference data node)."""

    def __init__(self, logger: Any = None) -> None:
        self.log = logger

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method

        async def check(context: Any) -> None:
            try:
                authorize(method, context)
            except (PermissionDeniedError, UnauthenticatedError) as e:
                if self.log is not None:
                    self.log.warning("call refused: certificate role", method=method.lstrip("/"),
                                     peer=context.peer(), error=str(e))
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))

        return wrap_handler(handler, check)


def wrap_handler(handler: Any, check: Any) -> Any:
    """`handler` with `await check(context)` run before its behaviour, for all four
    kinds of RPC (async generators stay async generators: grpc treats them differently)."""
    def unary_in(behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):
            async def gen(request: Any, context: Any) -> Any:
                await check(context)
                async for item in behavior(request, context):
                    yield item
            return gen

        async def call(request: Any, context: Any) -> Any:
            await check(context)
            return await behavior(request, context)
        return call

    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_in(handler.unary_unary), **kw)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(unary_in(handler.unary_stream), **kw)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_in(handler.stream_unary), **kw)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(unary_in(handler.stream_stream), **kw)
    return handler
