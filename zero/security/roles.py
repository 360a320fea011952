"""Certificate roles: who may call which gRPC service over mutual TLS.

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
role, by zero/frontdoor/auth.py's `check_admin`, so an operator can keep both factors. Without `--tls-dir`
nothing here applies: connections are plaintext and roles unchecked.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeAlias

import grpc

from zero.errors import PermissionDeniedError, UnauthenticatedError
from zero.log import Logger

__all__ = ["ROLES", "ANY", "SERVICE_ROLES", "FORCE_ROLES", "AuthContext", "subject_ous", "peer_roles", "authorize",
           "require_roles", "RoleInterceptor", "wrap_handler"]

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

# A servicer context of any kind of call (gRPC's are generic in the messages).
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class AuthContext(Protocol):
    """What the role checks read of a call: gRPC's auth context of its connection."""

    def auth_context(self) -> Mapping[str, Iterable[bytes]]: ...


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


def peer_roles(context: AuthContext) -> frozenset[str] | None:
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


def authorize(method: str, context: AuthContext) -> None:
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


def require_roles(context: AuthContext, allowed: frozenset[str], what: str) -> None:
    """For one request kind inside a service (a forced tablet assignment): PermissionDenied
    unless the TLS caller has one of `allowed`; no-op without TLS."""
    roles = peer_roles(context)
    if roles is not None and not roles & allowed:
        raise PermissionDeniedError(f"{what} needs a certificate with role {_describe(allowed)}, "
                                    f"not {_describe(roles)}")


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class RoleInterceptor(grpc.aio.ServerInterceptor):
    """`authorize` for a server without zero's Interceptor (the reference data node)."""

    def __init__(self, logger: Logger | None = None) -> None:
        self.log = logger

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
                                details: grpc.HandlerCallDetails) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method

        async def check(context: Context) -> None:
            try:
                authorize(method, context)
            except (PermissionDeniedError, UnauthenticatedError) as e:
                if self.log is not None:
                    self.log.warning("call refused: certificate role", method=method.lstrip("/"),
                                     peer=context.peer(), error=str(e))
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))

        return wrap_handler(handler, check)


def wrap_handler(handler: Handler, check: Callable[[Context], Awaitable[None]]) -> Handler:
    """`handler` with `await check(context)` run before its behaviour, for all four
    kinds of RPC (async generators stay async generators: grpc treats them differently)."""
    def unary_in(behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):
            async def gen(request: object, context: Context) -> AsyncIterator[object]:
                await check(context)
                async for item in behavior(request, context):
                    yield item
            return gen

        async def call(request: object, context: Context) -> object:
            await check(context)
            return await behavior(request, context)
        return call

    de, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_in(handler.unary_unary), de, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(unary_in(handler.unary_stream), de, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_in(handler.stream_unary), de, ser)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(unary_in(handler.stream_stream), de, ser)
    return handler
