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
role, by zero/server.py's `check_admin`, so an operator can keep both factors.
Without `--tls-dir` nothing here applies: connections are plaintext and roles unchecked.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]

from .errors import PermissionDeniedError, UnauthenticatedError, ZeroError

__all__ = [
    "TLS_FILES",
    "ROLES",
    "SERVICE_ROLES",
    "TlsConfig",
    "TlsError",
    "load_tls",
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


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The PEM bytes of one --tls-dir (the key is never printed)."""

    dir: str
    ca: bytes = field(repr=False)
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)

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


def load_tls(path: str) -> TlsConfig:
    """Read DIR/ca.crt, node.crt and node.key; TlsError names a missing, unreadable or
    non-PEM file. (gRPC checks that the key matches the certificate when it first uses
    them.)"""
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
    return TlsConfig(dir=path, ca=data[CA_FILE], cert=data[CERT_FILE], key=data[KEY_FILE])


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
