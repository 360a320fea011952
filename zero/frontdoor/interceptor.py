"""The interceptor: the one place every call to a zero passes through.

In order, for every call of zero's API: with TLS, the caller certificate's role
(zero/security.py); a running node (else UNAVAILABLE); `zero-leader-id` and
`zero-leader-addr` trailing metadata on a zero that is not the leader; the admin token
on ZeroAdmin methods (zero/frontdoor/auth.py). Then the call is served here, or
forwarded to the leader (zero/frontdoor/forwarding.py). Its outcome is classified: a
raised ZeroError becomes its gRPC status (`status_of`, the only error -> status table,
driven by each error's `.code`), anything else INTERNAL, logged a limited number of
times; and recorded as `zero_grpc_requests{method,code}` and
`zero_grpc_request_seconds{method}`.

Unary calls, server streams and bidirectional streams share one wrapper (`_Call`);
only the shape differs, a coroutine or an async generator, as gRPC requires.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TypeAlias, TypeVar, cast

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from zero import security
from zero.errors import UnavailableError, ZeroError
from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import zero_pb2
from zero.rpc import status_of
from zero.frontdoor.auth import check_admin
from zero.frontdoor.forwarding import ChannelFactory, Forwarder, MembershipStream, NodeSlot, ServingNode
from zero.frontdoor.wire import (
    ADMIN_PREFIX,
    LOCAL_METHODS,
    MEMBERSHIP_STREAM,
    ZERO_PREFIX,
    Context,
    Reply,
    Request,
)

__all__ = ["Interceptor", "Route", "ERROR_LOG_INTERVAL"]

ERROR_LOG_INTERVAL = 60.0  # seconds between log lines for one repeating unexpected error

# The behaviours of a service's handlers. grpc.aio runs coroutine functions and async
# generator functions; grpc's stubs type the synchronous API, hence the casts below.
Unary = Callable[[Message, Context], Awaitable[Reply]]
Streaming = Callable[[Request, Context], AsyncIterator[Reply]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Message, Reply]"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


@dataclass(frozen=True, slots=True)
class Route:
    """How the interceptor treats one method, decided from its name once."""

    method: str  # "/zero.v1.Zero/Connect"
    name: str  # the method without its leading "/": the metrics label
    admin: bool  # ZeroAdmin: the admin token is checked
    ours: bool  # zero's API: leader hints on a follower's replies
    forward: bool  # served by the leader: forwarded from a follower (one hop)
    rehint: bool = False  # a bidi stream: hints set again when it fails (leadership may have moved meanwhile)

    @classmethod
    def of(cls, method: str) -> Route:
        ours = method.startswith("/zero.v1.")
        return cls(method, method.lstrip("/"), method.startswith(ADMIN_PREFIX), ours,
                   ours and method not in LOCAL_METHODS)


class Interceptor(grpc.aio.ServerInterceptor):
    """Authorization, leader hints, forwarding, error mapping and metrics for every call
    (see the module doc). `slot` holds the node once it runs; `authorize` is
    security.authorize with TLS; `channel_factory` makes the channels to the leader
    (with TLS)."""

    def __init__(self, slot: NodeSlot, *, metrics: Metrics, admin_token: str | None, logger: Logger,
                 channel_factory: ChannelFactory | None = None,
                 authorize: Callable[[str, Context], None] | None = None) -> None:
        self.slot = slot
        self.admin_token = admin_token
        self.log = logger
        self.forwarder = Forwarder(slot, channel_factory)
        self._requests = metrics.grpc_requests
        self._seconds = metrics.grpc_seconds
        self._counts: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        self._wrapped: dict[str, Handler] = {}  # method -> its wrapped handler
        self._errors_logged: dict[tuple[str, ...], float] = {}
        self._authorize = authorize

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        # Services are registered once, before the server starts: a method's wrapped
        # handler is built on its first call and reused (the per-call path is one lookup).
        # It takes and answers the servicer's own messages (answers may come serialized:
        # its serializer passes bytes through), hence the casts.
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._wrap(cast(Handler, handler), Route.of(method))
        return cast("grpc.RpcMethodHandler[_Req, _Resp]", wrapped)

    async def close(self) -> None:
        await self.forwarder.close()

    # -- the wrapped handlers ---------------------------------------------------------------------
    def _wrap(self, handler: Handler, route: Route) -> Handler:
        ser = handler.response_serializer
        # A forwarded call, and a servicer's fast path, answer serialized bytes: passed on.
        response_serializer = _passing_bytes(ser) if route.forward and ser is not None else ser
        deser = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(route, cast(Unary, handler.unary_unary)),
                request_deserializer=deser, response_serializer=response_serializer)
        if handler.unary_stream is not None:
            if not inspect.isasyncgenfunction(handler.unary_stream):
                # A handler that writes with context.write() (grpc health's Watch) must stay
                # a coroutine: grpc treats the two kinds differently.
                return grpc.unary_stream_rpc_method_handler(
                    self._unary(replace(route, forward=False), cast(Unary, handler.unary_stream)),
                    request_deserializer=deser, response_serializer=response_serializer)
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(route, cast(Streaming, handler.unary_stream)),
                request_deserializer=deser, response_serializer=response_serializer)
        if handler.stream_stream is not None and route.method.startswith(ZERO_PREFIX):  # TimestampStream
            # Checked, forwarded from a follower and recorded like a unary call, once per stream.
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(replace(route, rehint=True), cast(Streaming, handler.stream_stream)),
                request_deserializer=deser, response_serializer=response_serializer)
        if self._authorize is not None:  # client-streaming (Raft.Stream, reflection): roles only
            return cast(Handler, security.wrap_handler(handler, functools.partial(self._check_role, route)))
        return handler

    def _unary(self, route: Route, behavior: Unary) -> Unary:
        forwarder = self.forwarder

        async def call(request: Message, context: Context) -> Reply:
            async with _Call(self, route, context):
                addr = forwarder.target(context) if route.forward else None
                if addr is not None:
                    return await forwarder.unary(route.method, addr, request, context)
                return await behavior(request, context)
        return call

    def _streaming(self, route: Route, behavior: Streaming) -> Streaming:
        """A server stream (one request) or a bidirectional stream (a stream of them)."""
        forwarder = self.forwarder
        follow = route.forward and route.method == MEMBERSHIP_STREAM

        async def call(request: Request, context: Context) -> AsyncIterator[Reply]:
            async with _Call(self, route, context):
                replies: AsyncIterator[Reply]
                if follow and isinstance(request, zero_pb2.StreamMembershipRequest):
                    replies = forwarder.follow_membership(cast(MembershipStream, behavior), request, context)
                else:
                    addr = forwarder.target(context) if route.forward else None
                    replies = (forwarder.stream(route.method, addr, request, context) if addr is not None
                               else behavior(request, context))
                async for item in replies:
                    yield item
        return call

    # -- the steps of every call ------------------------------------------------------------------
    def admit(self, route: Route, context: Context) -> None:
        """The checks a call passes before it is served or forwarded (see the module doc)."""
        if self._authorize is not None:
            self._authorize(route.method, context)
        node = self.slot.node
        if node is None:
            raise UnavailableError("zero is starting; retry shortly")
        if route.ours:
            _leader_hints(node, context)
        if route.admin:
            check_admin(self.admin_token, context.invocation_metadata())

    def hint_leader(self, context: Context) -> None:
        """Set the leader hints again (a long call fails after leadership moved)."""
        node = self.slot.node
        if node is not None:
            _leader_hints(node, context)

    def classify(self, e: BaseException, context: Context, name: str) -> tuple[str, tuple[grpc.StatusCode, str] | None]:
        """The status name of a failed call, and the status to abort it with (None: the
        exception already is the outcome — a cancellation or the servicer's own abort)."""
        if isinstance(e, asyncio.CancelledError):
            return "CANCELLED", None
        if isinstance(e, grpc.aio.AbortError):
            c = context.code()
            return (c.name if isinstance(c, grpc.StatusCode) else "UNKNOWN"), None
        if not isinstance(e, Exception):
            return "CANCELLED", None  # KeyboardInterrupt/SystemExit: not ours to turn into a status
        code, message = status_of(e)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            # Worth a warning (a misconfigured client, or someone guessing), once per method,
            # code, reason and caller host a minute. The message never carries a token or a key.
            peer = str(context.peer()) if hasattr(context, "peer") else ""
            who: tuple[str, ...] = (name, code.name, peer.rpartition(":")[0], message)
            now = time.monotonic()
            if len(self._errors_logged) > 10_000:
                self._errors_logged.clear()
            if now - self._errors_logged.get(who, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
                self._errors_logged[who] = now
                self.log.warning("call refused: not authorized", method=name, code=code.name, error=message,
                                 peer=peer)
        elif isinstance(e, ZeroError):
            self.log.debug("request refused", method=name, code=code.name, error=message)
        else:
            # Once per method and error type a minute: a bug hit by every request must
            # not flood the log.
            key, now = (name, type(e).__name__), time.monotonic()
            if now - self._errors_logged.get(key, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
                self._errors_logged[key] = now
                self.log.error("request failed with an unexpected error", method=name, error=repr(e))
        return code.name, (code, message)

    def record(self, name: str, code: str, seconds: float) -> None:
        count = self._counts.get((name, code))
        if count is None:
            count = self._counts[(name, code)] = self._requests.labels(name, code)
        count.inc()
        latency = self._latency.get(name)
        if latency is None:
            latency = self._latency[name] = self._seconds.labels(name)
        latency.observe(seconds)

    async def _check_role(self, route: Route, context: Context) -> None:
        assert self._authorize is not None
        try:
            self._authorize(route.method, context)
        except ZeroError as e:
            code, status = self.classify(e, context, route.name)
            self.record(route.name, code, 0.0)
            assert status is not None
            await context.abort(*status)


class _Call:
    """The wrapper every call runs in, whatever its kind: the interceptor's checks on
    entry; on exit the outcome classified, a failure turned into the call's status (an
    abort, which grpc expects), and the call recorded in the metrics."""

    __slots__ = ("icpt", "route", "context", "t0")

    def __init__(self, icpt: Interceptor, route: Route, context: Context) -> None:
        self.icpt = icpt
        self.route = route
        self.context = context
        self.t0 = 0.0

    async def __aenter__(self) -> None:
        self.t0 = time.perf_counter()
        try:
            self.icpt.admit(self.route, self.context)
        except BaseException as e:
            await self._failed(e)
            raise

    async def __aexit__(self, _type: type[BaseException] | None, e: BaseException | None,
                        _tb: TracebackType | None) -> None:
        if e is None:
            self.icpt.record(self.route.name, "OK", time.perf_counter() - self.t0)
        else:
            await self._failed(e)  # returns only when `e` is the outcome: it propagates

    async def _failed(self, e: BaseException) -> None:
        icpt, route = self.icpt, self.route
        code, status = icpt.classify(e, self.context, route.name)
        try:
            if status is not None:
                if route.rehint:
                    icpt.hint_leader(self.context)
                await self.context.abort(*status)
        finally:
            icpt.record(route.name, code, time.perf_counter() - self.t0)


def _leader_hints(node: ServingNode, context: Context) -> None:
    """`zero-leader-id`/`zero-leader-addr` trailers when this zero is not the leader."""
    if not node.is_leader and node.leader_id:
        md = [("zero-leader-id", str(node.leader_id))]
        zero = node.state.zeros.get(node.leader_id)
        if zero is not None and zero.addr:
            md.append(("zero-leader-addr", zero.addr))
        context.set_trailing_metadata(tuple(md))


def _passing_bytes(serialize: Callable[[Reply], bytes]) -> Callable[[Reply], bytes]:
    def serializer(reply: Reply) -> bytes:
        return reply if isinstance(reply, bytes) else serialize(reply)
    return serializer
