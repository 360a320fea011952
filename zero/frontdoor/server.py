"""zero's gRPC services: thin translations of requests onto ZeroNode, ZeroState and Leases.

- `Zero` (data nodes) and `ZeroAdmin` (operators), SPEC "gRPC".
- `Interceptor`: the one place every call passes through. With TLS it checks the caller
  certificate's role (zero/security.py) before anything else; it checks the admin token on
  ZeroAdmin methods, attaches `zero-leader-id`/`zero-leader-addr` trailing metadata on a
  zero that is not the leader, maps a raised ZeroError to its gRPC status (`status_of`,
  the only error → status table, driven by each error's `.code`), and records
  `zero_grpc_requests{method,code}` and `zero_grpc_request_seconds{method}`.
- `Liveness`: who is alive as the leader sees it — data nodes from their heartbeats
  (kept in the leader's memory only, never written through Raft), zeros from the Raft
  transport — overlaid onto every MembershipState this zero hands out; a follower mirrors
  the leader's view from the leader's StreamMembership, so every answer shows the
  leader's first-hand view.

Reads are linearizable: they wait for `ZeroNode.read_barrier()` (ReadIndex) before
reading the applied state. Writes are proposals that return once applied here.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from zero.ops import backup
from zero import security
from zero.state import validate
from zero.rpc import RECONNECT_OPTIONS, status_of
from zero.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    ZeroError,
)
from zero.leader.leases import Leases
from zero.metrics import Metrics
from zero.replica.node import ZeroNode
from zero.pb import state_pb2, zero_pb2, zero_pb2_grpc
from zero.frontdoor.stream import MembershipHub

__all__ = [
    "ZeroService",
    "ZeroAdminService",
    "Interceptor",
    "Liveness",
    "UnimplementedError",
    "check_admin",
    "LIVENESS_WINDOW",
    "MAX_MESSAGE_BYTES",
    "MAX_TABLETS_PER_REQUEST",
]

LIVENESS_WINDOW = 10.0  # seconds without a heartbeat after which a member is unhealthy
MAX_MESSAGE_BYTES = 16 << 20
MAX_TABLETS_PER_REQUEST = 10_000
STREAM_REQUESTS_AHEAD = 64  # TimestampStream requests read ahead of their answers, at most
ERROR_LOG_INTERVAL = 60.0  # seconds between log lines for one repeating unexpected error
SIZE_CHANGE_RATIO = 0.10  # UpdateTabletSizes proposes only changes above this
ADMIN_PREFIX = "/zero.v1.ZeroAdmin/"
# Answered by whichever zero is asked (everything else is forwarded to the leader).
LOCAL_METHODS = frozenset({"/zero.v1.ZeroAdmin/RaftStatus"})
# Set on a call a follower forwards, so the leader never forwards it again (one hop).
FORWARDED_MD = "zero-forwarded"
MEMBERSHIP_STREAM = "/zero.v1.Zero/StreamMembership"
ZERO_PREFIX = "/zero.v1.Zero/"
# Request metadata a forwarded call carries on to the leader.
FORWARD_MD_KEYS = frozenset({"authorization"})


class UnimplementedError(ZeroError):
    """A feature that arrives in a later release."""

    code = "UNIMPLEMENTED"


def check_admin(token: str | None, metadata: Any) -> None:
    """Raise unless `metadata` carries `authorization: Bearer <token>` (no token set:
    admin calls are open)."""
    if not token:
        return
    got = None
    for key, value in metadata or ():
        if key == "authorization":
            got = value if isinstance(value, str) else value.decode("ascii", "replace")
            break
    if got is None:
        raise UnauthenticatedError("this call needs the admin token: send metadata 'authorization: Bearer <token>'")
    scheme, _, presented = got.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise UnauthenticatedError("the authorization metadata must be 'Bearer <token>'")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise PermissionDeniedError("the admin token is wrong")


# -- liveness ------------------------------------------------------------------------------------
MIRROR_PERIOD = 0.25  # seconds between a follower's checks of whom it mirrors (and retries)


class _LeaderView:
    """On a follower: the leader's liveness of every zero and data node, as the leader's
    StreamMembership last said (`ready` once a whole state arrived)."""

    __slots__ = ("leader", "ready", "zeros", "members")

    def __init__(self, leader: int) -> None:
        self.leader = leader
        self.ready = False
        self.zeros: dict[int, tuple[bool, int]] = {}  # raft id -> (healthy, last heard, wall ms)
        self.members: dict[int, tuple[bool, int, bool]] = {}  # member -> (healthy, last heartbeat ms, leads)


class Liveness:
    """Who is alive, as the leader sees it, overlaid onto every MembershipState this zero
    hands out.

    - Data nodes: when each was last heard from (heartbeats), kept in the leader's memory
      only (never written through Raft). Measured with the monotonic clock;
      `last_heartbeat_ms` reports wall-clock time for people. Cleared on every leadership
      change: a new leader learns liveness afresh.
    - Zeros: on the leader, first-hand from the Raft transport and Raft's progress
      (Membership.is_live: heard from within an election timeout, its stream not down);
      `last_heartbeat_ms` is when the leader last admitted a batch from it.
    - On a follower, both are the leader's: the follower mirrors them from the leader's
      StreamMembership (a full state, then the deltas, in which liveness changes travel),
      so its /state shows what the leader sees. Until the mirror of the current leader is
      complete (just after a leader change), a follower reports itself healthy, the leader
      healthy when it heard from it within an election timeout, and everyone else as the
      previous mirror last said (unhealthy when nothing is known).
    """

    def __init__(self, node: ZeroNode, *, window: float = LIVENESS_WINDOW,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 mirror: bool = True) -> None:
        self.node = node
        self.window = window
        self._clock = clock
        self._wall = wall
        self._seen: dict[int, tuple[float, int, bool]] = {}  # member -> (monotonic, wall ms, leads its group)
        self._published: dict[int, tuple[bool, bool]] = {}
        self._published_zeros: dict[int, tuple[bool, bool]] = {}
        # Called when liveness flags change (a heartbeat of a member, a zero's health, a
        # leadership change, the leader's view arriving on a follower).
        self.on_flags_changed: Callable[[], None] = lambda: None
        self._since = clock()  # when liveness was last cleared (a leadership change)
        self._view: _LeaderView | None = None  # a follower's mirror of the leader's view
        self._mirror_task: asyncio.Task[None] | None = None
        node.on_leadership.append(self._reset)
        if mirror:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._mirror_task = loop.create_task(self._mirror_leader(), name="zero-liveness-mirror")

    def _reset(self, leader: bool, term: int) -> None:
        self._seen.clear()
        self._published_zeros = {}
        self._since = self._clock()
        self.on_flags_changed()

    @property
    def settled(self) -> bool:
        """Whether a whole liveness window has passed since liveness was last cleared:
        before that, a member not heard from yet may well be alive."""
        return self._clock() - self._since > self.window

    def beat(self, member_id: int, *, leader: bool = False) -> None:
        now = self._clock()
        prev = self._seen.get(member_id)
        self._seen[member_id] = (now, int(self._wall() * 1000), leader)
        if prev is None or now - prev[0] > self.window or prev[2] != leader:
            # Its healthy/leader flags change: cached renderings of the state are stale.
            self.on_flags_changed()

    def forget(self, member_id: int) -> None:
        self._seen.pop(member_id, None)

    def unhealthy(self) -> int:
        """How many data-node members are not healthy right now."""
        now = self._clock()
        n = 0
        for mid in self.node.state.member_ids():
            seen = self._seen.get(mid)
            if seen is None or now - seen[0] > self.window:
                n += 1
        return n

    def changed(self) -> list[int]:
        """Members whose (healthy, leader) flags changed since the last call: what
        StreamMembership must publish (liveness travels on the stream). Called
        periodically on the leader; a change of a zero's flags is announced through
        `on_flags_changed` (the hub publishes the zeros that changed)."""
        out = []
        published = self._published
        now = self._clock()
        current: dict[int, tuple[bool, bool]] = {}
        for mid in self.node.state.member_ids():
            seen = self._seen.get(mid)
            healthy = seen is not None and now - seen[0] <= self.window
            flags = (healthy, healthy and seen is not None and seen[2])
            current[mid] = flags
            if published.get(mid, (False, False)) != flags:
                out.append(mid)
        self._published = current
        lead = self.node.leader_id
        zeros = {zid: (healthy, zid == lead) for zid, (healthy, _) in self.zero_health().items()}
        if zeros != self._published_zeros:
            self._published_zeros = zeros
            self.on_flags_changed()
        return out

    def fill(self, m: zero_pb2.Member) -> None:
        view = self._view
        if view is not None and not self.node.is_leader:
            # A follower: the leader's view (while the mirror of a new leader is not
            # complete yet, the previous one's).
            healthy, hb_ms, leads = view.members.get(m.id, (False, 0, False))
            m.healthy, m.last_heartbeat_ms, m.leader = healthy, hb_ms, leads
            return
        seen = self._seen.get(m.id)
        if seen is None:
            m.healthy, m.last_heartbeat_ms, m.leader = False, 0, False
            return
        mono, wall_ms, leads = seen
        m.healthy = self._clock() - mono <= self.window
        m.last_heartbeat_ms = wall_ms
        m.leader = leads and m.healthy

    def zero_health(self) -> dict[int, tuple[bool, int]]:
        """Every zero's (healthy, last heard from, wall ms) as the leader sees it: first-hand
        on the leader, mirrored on a follower (see the class doc)."""
        node = self.node
        zeros = node.state.zeros
        if not zeros:
            return {}
        me, lead = node.raft_id, node.leader_id
        now_ms = int(self._wall() * 1000)
        out: dict[int, tuple[bool, int]] = {}
        if node.is_leader:
            try:
                progress = node.raft_status().progress or {}
            except Exception:  # raft not running (starting or stopping)
                progress = {}
            heard = node.transport.last_heard
            mono = time.monotonic()
            for zid in zeros:
                if zid == me:
                    out[zid] = (True, now_ms)
                    continue
                t = heard.get(zid)
                out[zid] = (node.membership.is_live(zid, progress),
                            now_ms - int((mono - t) * 1000) if t is not None else 0)
            return out
        view = self._current_view()
        if view is not None:
            return {zid: view.zeros.get(zid, (False, 0)) for zid in zeros}
        # No complete mirror of the current leader yet: what this zero knows itself.
        last = self._view.zeros if self._view is not None else {}
        timeout = node.opts.election_ticks * node.opts.tick_seconds
        for zid in zeros:
            if zid == me:
                out[zid] = (True, now_ms)
            elif zid == lead and node.transport.heard_within(zid, timeout):
                t = node.transport.last_heard.get(zid)
                out[zid] = (True, now_ms - int((time.monotonic() - t) * 1000) if t is not None else now_ms)
            else:
                out[zid] = last.get(zid, (False, 0))
        return out

    def overlay(self, state: zero_pb2.MembershipState) -> zero_pb2.MembershipState:
        """Fill the liveness fields of `state` in place (and return it)."""
        for group in state.groups.values():
            for m in group.members.values():
                self.fill(m)
        if state.zeros:
            lead = self.node.leader_id
            health = self.zero_health()
            for zid, z in state.zeros.items():
                z.leader = zid == lead
                z.healthy, z.last_heartbeat_ms = health.get(zid, (False, 0))
        return state

    # -- a follower's mirror of the leader's view ----------------------------------------------------
    def _current_view(self) -> _LeaderView | None:
        """The complete mirror of the current leader's view, on a follower; else None."""
        view = self._view
        node = self.node
        if view is None or not view.ready or node.is_leader or view.leader != node.leader_id:
            return None
        return view

    async def _mirror_leader(self) -> None:
        """While this zero follows a known leader, keep a mirror of its liveness view:
        the leader's StreamMembership, followed from the start (a full state) and resumed
        the same way whenever leadership moves. Ends when the node stops."""
        node = self.node
        started = False
        channel: grpc.aio.Channel | None = None
        channel_addr = ""
        try:
            while True:
                if node.removed.is_set() or node.fatal is not None:
                    return
                if not node.raft_started:
                    if started:
                        return  # stopped
                    await asyncio.sleep(MIRROR_PERIOD)
                    continue
                started = True
                lead = node.leader_id
                z = node.state.zeros.get(lead) if lead else None
                if node.is_leader or not lead or lead == node.raft_id or z is None or not z.addr:
                    await asyncio.sleep(MIRROR_PERIOD)
                    continue
                if channel is None or channel_addr != z.addr:
                    if channel is not None:
                        await channel.close()
                    channel_addr = z.addr
                    channel = _dial(z.addr, node.transport.credentials)
                try:
                    await self._follow(channel, lead)
                except (grpc.aio.AioRpcError, ZeroError) as e:
                    node.log.debug("the leader's liveness stream ended; following it again", leader=lead,
                                   error=str(e))
                await asyncio.sleep(MIRROR_PERIOD)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: a follower's /state falls back to its own view
            node.log.error("following the leader's liveness view failed", error=repr(e))
        finally:
            self._view = None
            if channel is not None:
                await channel.close()

    async def _follow(self, channel: grpc.aio.Channel, lead: int) -> None:
        """Read the leader's StreamMembership into the mirror until it ends, leadership
        moves away from `lead`, or this zero stops."""
        node = self.node
        call = channel.unary_stream(MEMBERSHIP_STREAM, request_serializer=_identity,
                                    response_deserializer=zero_pb2.MembershipUpdate.FromString)(
            zero_pb2.StreamMembershipRequest().SerializeToString(),
            metadata=((FORWARDED_MD, str(node.raft_id)),))
        reader = asyncio.ensure_future(self._read_view(call, lead))
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=MIRROR_PERIOD)
                if node.leader_id != lead or not node.raft_started or node.removed.is_set():
                    return
            reader.result()
        finally:
            call.cancel()
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_view(self, call: Any, lead: int) -> None:
        view = _LeaderView(lead)
        # The previous mirror's values stay the fallback until this one is complete.
        if self._view is not None:
            view.zeros = dict(self._view.zeros)
            view.members = dict(self._view.members)
        self._view = view
        full: _LeaderView | None = None
        async for u in call:
            if u.full:
                if full is None:
                    full = _LeaderView(lead)
                _take_liveness(full, u.state)
                if u.last_chunk:
                    view.zeros, view.members, view.ready = full.zeros, full.members, True
                    full = None
                    self.on_flags_changed()
                continue
            _take_liveness(view, u.state)
            for zid in u.removed_zeros:
                view.zeros.pop(zid, None)
            for mid in u.removed_members:
                view.members.pop(mid, None)
            if u.state.zeros or u.removed_zeros or any(g.members for g in u.state.groups.values()):
                self.on_flags_changed()


def _take_liveness(view: _LeaderView, st: zero_pb2.MembershipState) -> None:
    for zid, z in st.zeros.items():
        view.zeros[zid] = (z.healthy, z.last_heartbeat_ms)
    for g in st.groups.values():
        for mid, m in g.members.items():
            view.members[mid] = (m.healthy, m.last_heartbeat_ms, m.leader)


def _dial(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), *RECONNECT_OPTIONS]
    if credentials is not None:
        return grpc.aio.secure_channel(addr, credentials, options=opts)
    return grpc.aio.insecure_channel(addr, options=opts)


# -- the interceptor -----------------------------------------------------------------------------
class Interceptor(grpc.aio.ServerInterceptor):
    """Auth, leader hints, error mapping and metrics for every call (see module doc)."""

    def __init__(self, node: ZeroNode | Callable[[], ZeroNode | None], *, metrics: Metrics | None = None,
                 admin_token: str | None, logger: Any,
                 channel_factory: Callable[[str, list[tuple[str, Any]]], grpc.aio.Channel] | None = None,
                 authorize: Callable[[str, Any], None] | None = None) -> None:
        # `node` may be a callable: a grpc.aio server takes its interceptors when it is
        # built, which zero/app.py does before the node exists (to learn the bound port).
        self._node = node if callable(node) else (lambda: node)
        self.admin_token = admin_token
        self.log = logger
        m = metrics if metrics is not None else node.metrics  # type: ignore[union-attr]
        self._requests = m.grpc_requests
        self._seconds = m.grpc_seconds
        self._children: dict[tuple[str, str], Any] = {}
        self._wrapped: dict[str, Any] = {}  # method -> its wrapped handler
        self._errors_logged: dict[tuple[str, ...], float] = {}
        # Channels to the leader, for forwarding; a factory may add TLS.
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._channel_factory = channel_factory
        # With TLS: security.authorize (certificate roles), checked first on every call.
        self._authorize = authorize

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        # Services are registered once, before the server starts: a method's wrapped
        # handler is built on its first call and reused (the per-call path is one lookup).
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None:
            return None
        wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        name = method.lstrip("/")
        admin = method.startswith(ADMIN_PREFIX)
        ours = method.startswith("/zero.v1.")
        forwardable = ours and method not in LOCAL_METHODS
        # A forwarded call returns the leader's serialized reply as bytes: pass it on.
        ser = handler.response_serializer
        response_serializer = (lambda r: r if isinstance(r, bytes) else ser(r)) if forwardable else ser
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, name, admin, ours, method if forwardable else None),
                request_deserializer=handler.request_deserializer,
                response_serializer=response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, name, admin, ours, method if forwardable else None),
                request_deserializer=handler.request_deserializer,
                response_serializer=response_serializer)
        if handler.stream_stream is not None and method.startswith(ZERO_PREFIX):  # TimestampStream
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(handler.stream_stream, name, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=response_serializer)
        if self._authorize is not None:  # client-streaming (Raft.Stream, reflection): roles only
            return security.wrap_handler(handler, lambda context: self._check_role(method, name, context))
        return handler

    async def _check_role(self, method: str, name: str, context: grpc.aio.ServicerContext) -> None:
        assert self._authorize is not None
        try:
            self._authorize(method, context)
        except ZeroError as e:
            code, status = self._classify(e, context, name)
            self._record(name, code, 0.0)
            assert status is not None
            await context.abort(*status)

    # -- forwarding to the leader (SPEC: any zero accepts any data-node RPC, one hop) ---------------
    def _forward_target(self, context: grpc.aio.ServicerContext) -> str | None:
        """The leader's address when this call must be forwarded there; None to serve it
        here. UNAVAILABLE when it can be served nowhere right now."""
        node = self._node()
        if node is None or node.is_leader:
            return None
        if any(k == FORWARDED_MD for k, _ in context.invocation_metadata()):
            raise UnavailableError("forwarded to a zero that is not the leader (leadership is moving); retry")
        lead = node.leader_id
        if not lead:
            raise UnavailableError("no leader is known (an election may be in progress); retry shortly")
        z = node.state.zeros.get(lead)
        if z is None or not z.addr:
            raise UnavailableError(f"the leader (zero {lead}) has no known address yet; retry shortly")
        return z.addr

    def _leader_channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *RECONNECT_OPTIONS]
            ch = self._channel_factory(addr, opts) if self._channel_factory else grpc.aio.insecure_channel(addr, options=opts)
            self._channels[addr] = ch
        return ch

    def _forward_metadata(self, context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
        node = self._node()
        md = [(k, v) for k, v in context.invocation_metadata() if k in FORWARD_MD_KEYS]
        md.append((FORWARDED_MD, str(node.raft_id if node is not None else 0)))
        return md

    async def _forward_unary(self, method: str, addr: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        call = self._leader_channel(addr).unary_unary(method, request_serializer=_identity,
                                                      response_deserializer=_identity)
        try:
            return await call(request.SerializeToString(), timeout=context.time_remaining() or DEFAULT_FORWARD_TIMEOUT,
                              metadata=self._forward_metadata(context))
        except grpc.aio.AioRpcError as e:
            await context.abort(*_forwarded_status(e))
            raise  # unreachable: abort raises

    async def _forward_stream(self, method: str, addr: str, request: Any,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        call = self._leader_channel(addr).unary_stream(method, request_serializer=_identity,
                                                       response_deserializer=_identity)
        async for item in _relay(call(request.SerializeToString(), metadata=self._forward_metadata(context)),
                                 context):
            yield item

    async def _forward_bidi(self, method: str, addr: str, requests: AsyncIterator[Any],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """A bidirectional stream relayed to the leader, message by message both ways, for
        as long as the caller keeps it open. It is not moved when leadership moves: the
        old leader ends it with UNAVAILABLE, which the caller gets, and reopens."""
        call = self._leader_channel(addr).stream_stream(method, request_serializer=_identity,
                                                        response_deserializer=_identity)

        async def relay() -> AsyncIterator[bytes]:
            async for r in requests:
                yield r.SerializeToString()

        async for item in _relay(call(relay(), metadata=self._forward_metadata(context)), context):
            yield item

    async def _follow_membership(self, behavior: Any, request: Any,
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """StreamMembership on any zero: served from the leader's stream (liveness is the
        leader's), resumed there from the last version relayed whenever leadership moves,
        so a watcher of a follower keeps following through failovers and partitions of
        the old leader. Served locally whenever this zero leads."""
        since, cid = request.since_version, request.cluster_id
        loop = asyncio.get_running_loop()
        forwarded = any(k == FORWARDED_MD for k, _ in context.invocation_metadata())
        while True:
            node = self._node()
            if node is None:
                raise UnavailableError("zero is starting; retry shortly")
            if forwarded and not node.is_leader:
                raise UnavailableError("forwarded to a zero that is not the leader (leadership is moving); retry")
            if node.is_leader:
                async for item in behavior(zero_pb2.StreamMembershipRequest(since_version=since, cluster_id=cid),
                                           context):
                    yield item
                return
            deadline = loop.time() + 10.0
            while not node.leader_id or node.state.zeros.get(node.leader_id) is None:
                if loop.time() > deadline:
                    raise UnavailableError("no leader is known; resume the stream later with since_version")
                await asyncio.sleep(0.05)
            lead = node.leader_id
            if lead == node.raft_id:
                continue
            addr = node.state.zeros[lead].addr
            call = self._leader_channel(addr).unary_stream(
                "/zero.v1.Zero/StreamMembership", request_serializer=_identity, response_deserializer=_identity)(
                zero_pb2.StreamMembershipRequest(since_version=since, cluster_id=cid).SerializeToString(),
                metadata=self._forward_metadata(context))
            in_full = False
            try:
                it = call.__aiter__()
                moved = False
                while not moved:
                    nxt = asyncio.ensure_future(it.__anext__())
                    while not nxt.done():
                        await asyncio.wait({nxt}, timeout=0.2)
                        if not nxt.done() and node.leader_id != lead:
                            moved = True  # leadership moved: resume at the new leader
                            nxt.cancel()
                            await asyncio.gather(nxt, return_exceptions=True)
                            break
                    if moved:
                        break
                    try:
                        item = nxt.result()
                    except StopAsyncIteration:
                        return
                    u = zero_pb2.MembershipUpdate.FromString(item)
                    in_full = u.full and not u.last_chunk
                    if not in_full:
                        since, cid = u.version, u.cluster_id
                    yield item
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    await context.abort(*_forwarded_status(e))
            finally:
                call.cancel()
            if in_full:
                # Cut inside a full state: a clean restart is the client's (resume with
                # since_version), not a second full state merged into a partial one.
                raise UnavailableError("the leader changed while sending the full state; resume the stream")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def _prelude(self, context: grpc.aio.ServicerContext, admin: bool, ours: bool, name: str = "") -> None:
        if self._authorize is not None:
            self._authorize("/" + name, context)
        node = self._node()
        if node is None:
            raise UnavailableError("zero is starting; retry shortly")
        if ours:
            self._leader_hints(node, context)
        if admin:
            check_admin(self.admin_token, context.invocation_metadata())

    @staticmethod
    def _leader_hints(node: ZeroNode, context: grpc.aio.ServicerContext) -> None:
        """`zero-leader-id`/`zero-leader-addr` trailers when this zero is not the leader."""
        if not node.is_leader and node.leader_id:
            md = [("zero-leader-id", str(node.leader_id))]
            zero = node.state.zeros.get(node.leader_id)
            if zero is not None and zero.addr:
                md.append(("zero-leader-addr", zero.addr))
            context.set_trailing_metadata(tuple(md))

    def _unary(self, behavior: Any, name: str, admin: bool, ours: bool, forward: str | None = None) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            t0 = time.perf_counter()
            code = "OK"
            try:
                self._prelude(context, admin, ours, name)
                if forward is not None:
                    addr = self._forward_target(context)
                    if addr is not None:
                        return await self._forward_unary(forward, addr, request, context)
                return await behavior(request, context)
            except BaseException as e:
                code, status = self._classify(e, context, name)
                if status is None:
                    raise
                await context.abort(*status)  # raises AbortError, which grpc expects
            finally:
                self._record(name, code, time.perf_counter() - t0)
        return call

    def _stream(self, behavior: Any, name: str, admin: bool, ours: bool, forward: str | None = None) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with context.write() (grpc health's Watch) must stay
            # a coroutine: grpc treats the two kinds differently.
            return self._unary(behavior, name, admin, ours)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            code = "OK"
            try:
                self._prelude(context, admin, ours, name)
                if forward == MEMBERSHIP_STREAM:
                    items = self._follow_membership(behavior, request, context)
                else:
                    addr = self._forward_target(context) if forward is not None else None
                    items = (self._forward_stream(forward, addr, request, context) if addr is not None and forward
                             else behavior(request, context))
                async for item in items:
                    yield item
            except BaseException as e:
                code, status = self._classify(e, context, name)
                if status is None:
                    raise
                await context.abort(*status)  # raises AbortError, which grpc expects
            finally:
                self._record(name, code, time.perf_counter() - t0)
        return call

    def _bidi(self, behavior: Any, name: str, method: str) -> Any:
        """A Zero bidirectional stream (TimestampStream): checked, forwarded from a
        follower and recorded like a unary call, once per stream. Leadership can move while
        the stream is open, so the leader hints are set again when it fails."""
        async def call(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            code = "OK"
            try:
                self._prelude(context, False, True, name)
                addr = self._forward_target(context)
                items = (self._forward_bidi(method, addr, requests, context) if addr is not None
                         else behavior(requests, context))
                async for item in items:
                    yield item
            except BaseException as e:
                code, status = self._classify(e, context, name)
                if status is None:
                    raise
                node = self._node()
                if node is not None:
                    self._leader_hints(node, context)
                await context.abort(*status)  # raises AbortError, which grpc expects
            finally:
                self._record(name, code, time.perf_counter() - t0)
        return call

    def _classify(self, e: BaseException, context: grpc.aio.ServicerContext,
                  name: str) -> tuple[str, tuple[grpc.StatusCode, str] | None]:
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

    def _record(self, name: str, code: str, seconds: float) -> None:
        child = self._children.get((name, code))
        if child is None:
            child = self._children[(name, code)] = self._requests.labels(name, code)
        child.inc()
        sec = self._children.get((name, ""))
        if sec is None:
            sec = self._children[(name, "")] = self._seconds.labels(name)
        sec.observe(seconds)


DEFAULT_FORWARD_TIMEOUT = 30.0


def _identity(b: bytes) -> bytes:
    return b


def _forwarded_status(e: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """The leader's answer to a forwarded call, for our caller. The leader cancelling
    the call (it is going away) or being unreachable is UNAVAILABLE here: the caller
    should retry, and will find the next leader."""
    code = e.code()
    if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
        return grpc.StatusCode.UNAVAILABLE, f"the leader could not answer ({code.name}: {e.details()}); retry"
    return code, e.details() or ""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): a message field's encoding."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# -- Zero: the data-node API ------------------------------------------------------------------------
class ZeroService(zero_pb2_grpc.ZeroServicer):
    def __init__(self, node: ZeroNode, leases: Leases, liveness: Liveness, hub: MembershipHub, *,
                 admin_token: str | None, replicas: int) -> None:
        self.node = node
        self.hub = hub
        self.leases = leases
        self.liveness = liveness
        self.admin_token = admin_token
        self.replicas = replicas

    async def Connect(self, request: zero_pb2.ConnectRequest, context: Any) -> zero_pb2.ConnectResponse:
        addr = validate.address(request.addr, "addr")
        if request.learner and not request.group_id:
            raise InvalidArgumentError("a learner must name the group it replicates (group_id)")
        applied = await self.node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(
            id=request.id, addr=addr, group_id=request.group_id, learner=request.learner,
            replicas=self.replicas)))
        member = applied.member
        assert member is not None
        if self.node.is_leader:
            self.liveness.beat(member.id)
        self.liveness.fill(member)
        # ConnectResponse{member = 1, state = 2}, the state shared and serialized once per
        # version (the interceptor passes bytes through).
        return _len_field(1, member.SerializeToString()) + _len_field(2, self.hub.state_bytes())

    async def Heartbeat(self, request: zero_pb2.HeartbeatRequest, context: Any) -> zero_pb2.HeartbeatResponse:
        node = self.node
        if not request.member_id:
            raise InvalidArgumentError("member_id is 0; connect first to get an id")
        _require_leader(node, "heartbeats")
        member = node.state.member(request.member_id)
        if member is None:
            await node.read_barrier()  # a new leader may not have applied the Connect yet
            member = node.state.member(request.member_id)
        if member is None:
            if node.state.is_removed(request.member_id):
                raise FailedPreconditionError(
                    f"member {request.member_id} was removed from the cluster; it must not serve")
            raise NotFoundError(f"member {request.member_id} is unknown; connect first")
        if request.group_id and request.group_id != member.group_id:
            raise FailedPreconditionError(
                f"member {request.member_id} belongs to group {member.group_id}, not {request.group_id}")
        self.liveness.beat(request.member_id, leader=request.leader)
        return zero_pb2.HeartbeatResponse(version=node.state.version)

    async def ShouldServe(self, request: zero_pb2.Tablet, context: Any) -> zero_pb2.Tablet:
        resp = await self._tablets([request], context)
        return resp[0]

    async def Tablets(self, request: zero_pb2.TabletsRequest, context: Any) -> zero_pb2.TabletsResponse:
        if len(request.tablets) > MAX_TABLETS_PER_REQUEST:
            raise InvalidArgumentError(
                f"{len(request.tablets)} tablets in one request; at most {MAX_TABLETS_PER_REQUEST:,} are allowed")
        return zero_pb2.TabletsResponse(tablets=await self._tablets(list(request.tablets), context))

    async def _tablets(self, tablets: list[zero_pb2.Tablet], context: Any) -> list[zero_pb2.Tablet]:
        """Look up, claim or (admin) force each tablet; answers in request order.

        All input is checked before anything is proposed, so a bad request changes
        nothing. Unowned tablets named with a group are claimed in one proposal."""
        forced = False
        for t in tablets:
            # A claim names a new tablet: the stricter rule. A lookup may name one created
            # before it (an older release's log).
            (validate.new_tablet_name if t.group_id or t.force else validate.tablet_name)(t.predicate)
            if t.force:
                validate.group_id(t.group_id, f"group_id of forced tablet {t.predicate!r}")
                forced = True
        if forced:
            security.require_roles(context, security.FORCE_ROLES, "a forced tablet assignment")
            check_admin(self.admin_token, context.invocation_metadata())
        node = self.node
        await node.read_barrier()
        state = node.state
        groups = state.groups
        for t in tablets:
            if t.group_id and t.group_id not in groups and (t.force or not state.group_of(t.predicate)):
                raise NotFoundError(f"group {t.group_id} does not exist (tablet {t.predicate!r})")
        for t in tablets:
            if t.force:
                await node.propose(state_pb2.Proposal(
                    force_tablet=state_pb2.ForceTablet(predicate=t.predicate, group_id=t.group_id)))
        claims = [zero_pb2.Tablet(predicate=t.predicate, group_id=t.group_id)
                  for t in tablets if not t.force and t.group_id and not node.state.group_of(t.predicate)]
        if claims:
            await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=claims)))
        out = []
        for t in tablets:
            owned = node.state.tablet(t.predicate)
            out.append(owned if owned is not None else zero_pb2.Tablet(predicate=t.predicate))
        return out

    async def UpdateTabletSizes(self, request: zero_pb2.TabletSizes,
                                context: Any) -> zero_pb2.UpdateTabletSizesResponse:
        gid = validate.group_id(request.group_id)
        if len(request.sizes) > MAX_TABLETS_PER_REQUEST:
            raise InvalidArgumentError(
                f"{len(request.sizes)} tablet sizes in one request; at most {MAX_TABLETS_PER_REQUEST:,} are allowed")
        for name, size in request.sizes.items():
            validate.tablet_name(name)
            validate.tablet_size(name, size)
        node = self.node
        await node.read_barrier()
        group = node.state.groups.get(gid)
        if group is None:
            raise NotFoundError(f"group {gid} does not exist")
        changed = {}
        for name, size in request.sizes.items():
            t = group.tablets.get(name)
            if t is None:
                continue  # not this group's tablet (any more): a stale report
            cur = t.size_bytes
            if (cur == 0 and size != 0) or abs(size - cur) > SIZE_CHANGE_RATIO * cur:
                changed[name] = size
        if changed:
            await node.propose(state_pb2.Proposal(tablet_sizes=zero_pb2.TabletSizes(group_id=gid, sizes=changed)))
        return zero_pb2.UpdateTabletSizesResponse()

    async def AssignIds(self, request: zero_pb2.AssignIdsRequest, context: Any) -> zero_pb2.AssignedIds:
        return await self.leases.assign(request.kind, request.count)

    async def Timestamps(self, request: zero_pb2.TimestampsRequest, context: Any) -> zero_pb2.AssignedIds:
        return await self.leases.assign(zero_pb2.TIMESTAMP, request.count)

    async def TimestampStream(self, requests: AsyncIterator[zero_pb2.TimestampsRequest],
                              context: Any) -> AsyncIterator[zero_pb2.AssignedIds]:
        """Timestamps over one stream: each request is answered, in order, exactly as a
        unary Timestamps of its count (SPEC semantics 2). A request's ReadIndex round
        starts as soon as it is read, so it begins after the request arrived and requests
        outstanding together share rounds; ranges are handed out in request order. A bad
        count ends the stream with INVALID_ARGUMENT once the requests before it are
        answered; nothing is handed out for it."""
        leases = self.leases
        # Bounded: a client that pipelines without reading answers is not read further
        # (gRPC flow control then holds it back) instead of growing this queue.
        pending: asyncio.Queue[tuple[asyncio.Future[None], int] | BaseException | None] = asyncio.Queue(
            maxsize=STREAM_REQUESTS_AHEAD)

        async def read() -> None:
            try:
                async for req in requests:
                    barrier = leases.begin_timestamps(req.count)
                    try:
                        await pending.put((barrier, req.count))
                    except asyncio.CancelledError:
                        barrier.cancel()  # the stream ended while this one waited for room
                        raise
                await pending.put(None)
            except Exception as e:  # noqa: BLE001 - the stream ends with it, in order
                await pending.put(e)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield await leases.timestamps_after(*item)
        finally:
            reader.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if isinstance(item, tuple):
                    barrier = item[0]
                    if barrier.done() and not barrier.cancelled():
                        barrier.exception()  # retrieved: nobody waits for this round any more
                    barrier.cancel()

    async def GetState(self, request: zero_pb2.GetStateRequest, context: Any) -> zero_pb2.MembershipState:
        await self.node.read_barrier()
        return self.hub.state_bytes()  # serialized once per version; passed through as bytes

    async def StreamMembership(self, request: zero_pb2.StreamMembershipRequest,
                               context: Any) -> AsyncIterator[zero_pb2.MembershipUpdate]:
        if request.cluster_id:
            validate.cluster_id(request.cluster_id)
        # Serialized once for all watchers; the interceptor passes bytes through.
        async for update in self.hub.stream(request.since_version, request.cluster_id, serialized=True):
            yield update


async def _relay(stream: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """The leader's replies on a forwarded stream, passed on as bytes; its error status
    becomes ours; the forwarded call is cancelled whenever ours ends."""
    try:
        async for item in stream:
            yield item
    except grpc.aio.AioRpcError as e:
        await context.abort(*_forwarded_status(e))
    finally:
        stream.cancel()


def _require_leader(node: ZeroNode, what: str) -> None:
    if not node.is_leader:
        lead = node.leader_id
        hint = f"the leader is zero {lead}" if lead else "no leader is known"
        raise UnavailableError(f"{what} are served by the leader and this zero is not it ({hint}); "
                               "retry on the leader (see trailing metadata zero-leader-addr)")


# -- ZeroAdmin: the operator API ------------------------------------------------------------------
class ZeroAdminService(zero_pb2_grpc.ZeroAdminServicer):
    """Authorised by the Interceptor (admin token) before any method runs."""

    def __init__(self, node: ZeroNode, liveness: Liveness, moves: Any = None) -> None:
        self.node = node
        self.liveness = liveness
        self.moves = moves  # zero/leader/moves.py MoveDriver; None: moves are not offered

    async def RemoveNode(self, request: zero_pb2.RemoveNodeRequest, context: Any) -> zero_pb2.RemoveNodeResponse:
        if not request.node_id:
            raise InvalidArgumentError("node_id is 0; name the member to remove")
        if request.group_id == 0:
            # A zero peer: a Raft membership change (refused for the last zero or when
            # it would leave no live quorum; a leader hands leadership over first).
            member = await self.node.remove_zero(request.node_id)
            return zero_pb2.RemoveNodeResponse(removed=member, version=self.node.state.version)
        applied = await self.node.propose(state_pb2.Proposal(
            remove_member=state_pb2.RemoveMember(node_id=request.node_id, group_id=request.group_id)))
        self.liveness.forget(request.node_id)
        return zero_pb2.RemoveNodeResponse(removed=applied.member, version=applied.version)

    async def MoveTablet(self, request: zero_pb2.MoveTabletRequest, context: Any) -> zero_pb2.MoveTabletResponse:
        """Move a tablet now (copy included) and answer with the outcome."""
        if self.moves is None:
            raise UnimplementedError("tablet moves are not enabled on this zero")
        validate.tablet_name(request.predicate)
        validate.group_id(request.dst_group, "dst_group")
        return await self.moves.move(request.predicate, request.dst_group)

    async def TransferLeadership(self, request: zero_pb2.TransferLeadershipRequest,
                                 context: Any) -> zero_pb2.TransferLeadershipResponse:
        leader = await self.node.transfer_leadership(to=request.transferee)
        return zero_pb2.TransferLeadershipResponse(leader_id=leader)

    async def Snapshot(self, request: zero_pb2.SnapshotRequest, context: Any) -> zero_pb2.SnapshotResponse:
        index = await self.node.take_snapshot()
        # DiskStorage.snapshot() is Storage's public read; ZeroNode keeps the storage private.
        storage = getattr(self.node, "_storage", None)
        term = size = 0
        if storage is not None and index:
            snap = storage.snapshot()
            term, size = snap.metadata.term, len(snap.data)
        return zero_pb2.SnapshotResponse(index=index, term=term, size_bytes=size)

    async def RaftStatus(self, request: zero_pb2.RaftStatusRequest, context: Any) -> zero_pb2.RaftStatusResponse:
        """This zero's Raft status (answered locally). On the leader, `progress` lists
        every peer; its `recent_active` is the leader's judgement of the peer's liveness
        (heard from within an election timeout and its stream not down: the same as the
        zero's `healthy` in GetState), not Raft's raw flag, which CheckQuorum clears at
        every round and would make a live peer look inactive for a moment."""
        node = self.node
        st = node.raft_status()
        resp = zero_pb2.RaftStatusResponse(
            id=st.id, term=st.term, vote=st.vote, lead=st.lead, commit=st.commit, applied=node.applied,
            role=st.raft_state.name, cluster_id=node.state.cluster_id)
        lead = node.state.zeros.get(st.lead)
        if lead is not None:
            resp.leader_addr = lead.addr
        for pid, pr in (st.progress or {}).items():
            resp.progress[pid].CopyFrom(zero_pb2.RaftProgress(
                match=pr.match, next=pr.next, state=str(pr.state),
                recent_active=node.membership.is_live(pid, st.progress),
                paused=pr.paused, inflight=pr.inflight, learner=pr.is_learner))
        return resp

    async def SetRebalance(self, request: zero_pb2.SetRebalanceRequest,
                           context: Any) -> zero_pb2.SetRebalanceResponse:
        """ON/OFF: the replicated switch of the periodic rebalancer. NOW: one planning round
        now (whatever the switch says); answers with the moves it started."""
        mode = request.mode
        Mode = zero_pb2.SetRebalanceRequest
        if self.moves is None:
            raise UnimplementedError("the rebalancer is not enabled on this zero")
        if mode in (Mode.ON, Mode.OFF):
            await self.node.propose(state_pb2.Proposal(
                set_rebalance=state_pb2.SetRebalanceEnabled(enabled=mode == Mode.ON)))
            return zero_pb2.SetRebalanceResponse(enabled=self.node.state.rebalance_enabled)
        if mode == Mode.NOW:
            started = await self.moves.rebalance_now()
            return zero_pb2.SetRebalanceResponse(enabled=self.node.state.rebalance_enabled, started_moves=started)
        raise InvalidArgumentError(f"rebalance mode {mode} is not ON, OFF or NOW")

    async def Backup(self, request: zero_pb2.BackupRequest, context: Any) -> AsyncIterator[zero_pb2.BackupChunk]:
        """A consistent backup (zero/ops/backup.py), taken here on the leader (the
        Interceptor forwards it): a ReadIndex barrier, then the state as applied at that
        index, streamed in 1 MiB chunks."""
        node = self.node
        _require_leader(node, "backups")
        index, term, body = await node.consistent_snapshot()
        cid = node.state.cluster_id
        if not cid:
            raise UnavailableError("the cluster has no id yet (its first leader is starting); retry")
        data = backup.encode(body, cluster_id=cid, index=index, term=term, leader_id=node.raft_id)
        node.log.info("backup taken", index=index, term=term, bytes=len(data))
        for chunk in backup.chunks(data, version=node.state.version, cluster_id=cid):
            yield chunk
