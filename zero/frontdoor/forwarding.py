"""Forwarding to the leader (SPEC: any zero accepts any data-node RPC, one hop).

A zero that is not the leader passes a call of zero's API on to the leader, message by
message as bytes, and its caller gets the leader's answer or status. The forwarded call
carries `zero-forwarded`, so a zero that is no longer the leader when it arrives refuses
it (UNAVAILABLE: leadership is moving) instead of forwarding it again. StreamMembership
is followed instead: served from the leader's stream and resumed at the next leader
whenever leadership moves, so a watcher of a follower keeps following through failovers.

The interceptor (zero/frontdoor/interceptor.py) decides which calls go through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Protocol

import grpc
from google.protobuf.message import Message

from zero.errors import UnavailableError
from zero.pb import zero_pb2
from zero.rpc import RECONNECT_OPTIONS, code_of
from zero.frontdoor.wire import (
    FORWARD_MD_KEYS,
    FORWARDED_MD,
    MAX_MESSAGE_BYTES,
    MEMBERSHIP_STREAM,
    Context,
    Reply,
    Request,
    identity,
)

__all__ = ["ChannelFactory", "Forwarder", "NodeSlot", "ServingNode", "DEFAULT_FORWARD_TIMEOUT", "dial"]

DEFAULT_FORWARD_TIMEOUT = 30.0  # seconds for a forwarded unary call whose caller set no deadline
LEADER_WAIT = 10.0  # seconds a followed membership stream waits for a leader to be known
FOLLOW_POLL = 0.05  # seconds between looks for a leader (and before resuming at it)
MOVED_POLL = 0.2  # seconds between checks that the followed leader still leads

# Makes a channel to ADDR with these options (zero/app.py adds TLS).
ChannelFactory = Callable[[str, list[tuple[str, object]]], grpc.aio.Channel]
# A servicer's StreamMembership: followed here when this zero does not lead.
MembershipStream = Callable[[zero_pb2.StreamMembershipRequest, Context], AsyncIterator[Reply]]


class _StreamCall(Protocol):
    """A forwarded stream's call (grpc.aio's unary-stream and stream-stream calls)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def cancel(self) -> bool: ...


class _Zeros(Protocol):
    @property
    def zeros(self) -> Mapping[int, zero_pb2.Member]: ...


class ServingNode(Protocol):
    """What the interceptor and forwarding read of the node (ZeroNode): who leads, and
    where the leader is."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> int: ...
    @property
    def raft_id(self) -> int: ...
    @property
    def state(self) -> _Zeros: ...


class NodeSlot:
    """The node the front door serves, once there is one.

    The gRPC server takes its interceptors when it is built, and zero/app.py builds it
    (binding the port, to learn it) before the node exists; the app puts the node here
    once it runs and takes it out when it stops. While `node` is None every call is
    answered UNAVAILABLE ("zero is starting")."""

    __slots__ = ("node",)

    def __init__(self, node: ServingNode | None = None) -> None:
        self.node = node


class Forwarder:
    """Calls passed on to the leader, over one channel per leader address."""

    def __init__(self, slot: NodeSlot, channel_factory: ChannelFactory | None = None) -> None:
        self.slot = slot
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retired: list[grpc.aio.Channel] = []
        self._channel_factory = channel_factory

    def renew(self) -> None:
        """The certificates were reloaded: the next forwarded call dials a new channel
        (a channel keeps its credentials, also when it reconnects); calls open on the old
        ones finish there, and they close with the forwarder."""
        self._retired.extend(self._channels.values())
        self._channels.clear()

    def target(self, context: Context) -> str | None:
        """The leader's address when this call must be forwarded there; None to serve it
        here. UNAVAILABLE when it can be served nowhere right now."""
        node = self.slot.node
        if node is None or node.is_leader:
            return None
        if _was_forwarded(context):
            raise UnavailableError("forwarded to a zero that is not the leader (leadership is moving); retry")
        lead = node.leader_id
        if not lead:
            raise UnavailableError("no leader is known (an election may be in progress); retry shortly")
        z = node.state.zeros.get(lead)
        if z is None or not z.addr:
            raise UnavailableError(f"the leader (zero {lead}) has no known address yet; retry shortly")
        return z.addr

    async def unary(self, method: str, addr: str, request: Message, context: Context) -> bytes:
        """A unary call answered by the leader: its reply, serialized."""
        call = self._channel(addr).unary_unary(method, request_serializer=identity, response_deserializer=identity)
        try:
            reply: bytes = await call(request.SerializeToString(),
                                      timeout=context.time_remaining() or DEFAULT_FORWARD_TIMEOUT,
                                      metadata=self._metadata(context))
        except grpc.aio.AioRpcError as e:
            await context.abort(*forwarded_status(e))
        return reply

    def stream(self, method: str, addr: str, request: Request, context: Context) -> AsyncIterator[bytes]:
        """A server stream (one request) or a bidirectional stream (the caller's requests,
        relayed one by one for as long as the caller keeps it open) answered by the
        leader. A stream is not moved when leadership moves: the old leader ends it with
        UNAVAILABLE, which the caller gets, and reopens."""
        channel = self._channel(addr)
        metadata = self._metadata(context)
        if isinstance(request, Message):
            return _relay(channel.unary_stream(method, request_serializer=identity, response_deserializer=identity)(
                request.SerializeToString(), metadata=metadata), context)
        return _relay(channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)(
            _serialized(request), metadata=metadata), context)

    async def follow_membership(self, local: MembershipStream, request: zero_pb2.StreamMembershipRequest,
                                context: Context) -> AsyncIterator[Reply]:
        """StreamMembership on any zero: served from the leader's stream (liveness is the
        leader's), resumed there from the last version relayed whenever leadership moves,
        so a watcher of a follower keeps following through failovers and partitions of
        the old leader. Served locally (`local`) whenever this zero leads."""
        since, cid = request.since_version, request.cluster_id
        loop = asyncio.get_running_loop()
        forwarded = _was_forwarded(context)
        while True:
            node = self.slot.node
            if node is None:
                raise UnavailableError("zero is starting; retry shortly")
            if forwarded and not node.is_leader:
                raise UnavailableError("forwarded to a zero that is not the leader (leadership is moving); retry")
            if node.is_leader:
                async for item in local(zero_pb2.StreamMembershipRequest(since_version=since, cluster_id=cid),
                                        context):
                    yield item
                return
            deadline = loop.time() + LEADER_WAIT
            while not node.leader_id or node.state.zeros.get(node.leader_id) is None:
                if loop.time() > deadline:
                    raise UnavailableError("no leader is known; resume the stream later with since_version")
                await asyncio.sleep(FOLLOW_POLL)
            lead = node.leader_id
            if lead == node.raft_id:
                continue
            addr = node.state.zeros[lead].addr
            call: grpc.aio.UnaryStreamCall[bytes, bytes] = self._channel(addr).unary_stream(
                MEMBERSHIP_STREAM, request_serializer=identity, response_deserializer=identity)(
                zero_pb2.StreamMembershipRequest(since_version=since, cluster_id=cid).SerializeToString(),
                metadata=self._metadata(context))
            in_full = False
            try:
                it = call.__aiter__()
                moved = False
                while not moved:
                    nxt = asyncio.ensure_future(it.__anext__())
                    while not nxt.done():
                        await asyncio.wait({nxt}, timeout=MOVED_POLL)
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
                if code_of(e) not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    await context.abort(*forwarded_status(e))
            finally:
                call.cancel()
            if in_full:
                # Cut inside a full state: a clean restart is the client's (resume with
                # since_version), not a second full state merged into a partial one.
                raise UnavailableError("the leader changed while sending the full state; resume the stream")
            await asyncio.sleep(FOLLOW_POLL)

    async def close(self) -> None:
        for ch in [*self._channels.values(), *self._retired]:
            await ch.close()
        self._channels.clear()
        self._retired.clear()

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            opts: list[tuple[str, object]] = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                              ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                              *RECONNECT_OPTIONS]
            ch = self._channels[addr] = dial(addr, opts, self._channel_factory)
        return ch

    def _metadata(self, context: Context) -> list[tuple[str, str | bytes]]:
        node = self.slot.node
        md = [(k, v) for k, v in _metadata_of(context) if k in FORWARD_MD_KEYS]
        md.append((FORWARDED_MD, str(node.raft_id if node is not None else 0)))
        return md


def dial(addr: str, options: list[tuple[str, object]], factory: ChannelFactory | None) -> grpc.aio.Channel:
    """A channel to another zero: through `factory` (with TLS), else plaintext."""
    return factory(addr, options) if factory is not None else grpc.aio.insecure_channel(addr, options=options)


def forwarded_status(e: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """The leader's answer to a forwarded call, for our caller. The leader cancelling
    the call (it is going away) or being unreachable is UNAVAILABLE here: the caller
    should retry, and will find the next leader."""
    code = code_of(e)
    if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
        return grpc.StatusCode.UNAVAILABLE, f"the leader could not answer ({code.name}: {e.details()}); retry"
    return code, e.details() or ""


async def _relay(call: _StreamCall, context: Context) -> AsyncIterator[bytes]:
    """The leader's replies on a forwarded stream, passed on as bytes; its error status
    becomes ours; the forwarded call is cancelled whenever ours ends."""
    try:
        async for item in call:
            yield item
    except grpc.aio.AioRpcError as e:
        await context.abort(*forwarded_status(e))
    finally:
        call.cancel()


async def _serialized(requests: AsyncIterator[Message]) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r.SerializeToString()


def _metadata_of(context: Context) -> Iterable[tuple[str, str | bytes]]:
    return context.invocation_metadata() or ()


def _was_forwarded(context: Context) -> bool:
    return any(k == FORWARDED_MD for k, _ in _metadata_of(context))

