"""A follower's mirror of the leader's liveness view.

Liveness is judged first-hand only on the leader (zero/frontdoor/liveness.py). A follower
follows the leader's StreamMembership, where liveness changes travel, and keeps the
leader's (healthy, last heartbeat, leads) of every zero and data node, so that its own
answers (GetState, /state, its membership stream) show what the leader sees. The stream
is followed from the start (a full state, then the deltas) and begun again the same way
whenever leadership moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from zero.errors import ZeroError
from zero.pb import zero_pb2
from zero.replica.node import ZeroNode
from zero.rpc import RECONNECT_OPTIONS
from zero.frontdoor.forwarding import ChannelFactory, dial
from zero.frontdoor.wire import FORWARDED_MD, MAX_MESSAGE_BYTES, MEMBERSHIP_STREAM, identity

__all__ = ["LeaderMirror", "LeaderView", "MIRROR_PERIOD"]

MIRROR_PERIOD = 0.25  # seconds between a follower's checks of whom it mirrors (and retries)


class LeaderView:
    """The leader's liveness of every zero and data node, as the leader's StreamMembership
    last said (`ready` once a whole state arrived)."""

    __slots__ = ("leader", "ready", "zeros", "members")

    def __init__(self, leader: int) -> None:
        self.leader = leader
        self.ready = False
        self.zeros: dict[int, tuple[bool, int]] = {}  # raft id -> (healthy, last heard, wall ms)
        self.members: dict[int, tuple[bool, int, bool]] = {}  # member -> (healthy, last heartbeat ms, leads)


class LeaderMirror:
    """Keeps `view` while this zero follows a known leader; `run` is its task.

    `view` is the mirror being filled (the previous leader's values stay in it until the
    new leader's full state is complete); `current()` is the complete mirror of the
    current leader, or None. `on_change` is called whenever the mirrored flags change;
    `channel_factory` dials the leader with TLS (None: plaintext)."""

    def __init__(self, node: ZeroNode, on_change: Callable[[], None], *,
                 channel_factory: ChannelFactory | None = None) -> None:
        self.node = node
        self.on_change = on_change
        self.view: LeaderView | None = None
        self._channel_factory = channel_factory
        self._renew = False

    def current(self) -> LeaderView | None:
        """The complete mirror of the current leader's view, on a follower; else None."""
        view = self.view
        node = self.node
        if view is None or not view.ready or node.is_leader or view.leader != node.leader_id:
            return None
        return view

    def renew(self) -> None:
        """The certificates were reloaded: dial the leader anew when its stream next ends
        (a channel keeps the credentials it was made with, also when it reconnects)."""
        self._renew = True

    async def run(self) -> None:
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
                if channel is None or channel_addr != z.addr or self._renew:
                    self._renew = False
                    if channel is not None:
                        await channel.close()
                    channel_addr = z.addr
                    channel = dial(z.addr, [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                            *RECONNECT_OPTIONS], self._channel_factory)
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
            self.view = None
            if channel is not None:
                await channel.close()

    async def _follow(self, channel: grpc.aio.Channel, lead: int) -> None:
        """Read the leader's StreamMembership into the mirror until it ends, leadership
        moves away from `lead`, or this zero stops."""
        node = self.node
        call: grpc.aio.UnaryStreamCall[bytes, zero_pb2.MembershipUpdate] = channel.unary_stream(
            MEMBERSHIP_STREAM, request_serializer=identity,
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

    async def _read_view(self, call: grpc.aio.UnaryStreamCall[bytes, zero_pb2.MembershipUpdate],
                         lead: int) -> None:
        view = LeaderView(lead)
        # The previous mirror's values stay the fallback until this one is complete.
        if self.view is not None:
            view.zeros = dict(self.view.zeros)
            view.members = dict(self.view.members)
        self.view = view
        full: LeaderView | None = None
        async for u in call:
            if u.full:
                if full is None:
                    full = LeaderView(lead)
                _take_liveness(full, u.state)
                if u.last_chunk:
                    view.zeros, view.members, view.ready = full.zeros, full.members, True
                    full = None
                    self.on_change()
                continue
            _take_liveness(view, u.state)
            for zid in u.removed_zeros:
                view.zeros.pop(zid, None)
            for mid in u.removed_members:
                view.members.pop(mid, None)
            if u.state.zeros or u.removed_zeros or any(g.members for g in u.state.groups.values()):
                self.on_change()


def _take_liveness(view: LeaderView, st: zero_pb2.MembershipState) -> None:
    for zid, z in st.zeros.items():
        view.zeros[zid] = (z.healthy, z.last_heartbeat_ms)
    for g in st.groups.values():
        for mid, m in g.members.items():
            view.members[mid] = (m.healthy, m.last_heartbeat_ms, m.leader)

