"""The simulated network between zeros: the PeerTransport seam (zero/replica/ports.py).

`SimTransport` is zero's own Transport (zero/replica/transport.py) with the gRPC half
replaced: admission (`admit`), delivery (`deliver`, last_heard), refusals
(`refused_by_peer`: REMOVED, CLUSTER_MISMATCH) are the real code; `send`, `set_peers`,
`join` and the peer states go through `SimNetwork` instead of channels.

Messages are serialized at `send` and parsed at delivery (nothing aliases), and travel
after a seeded delay, in order per link (as on one gRPC stream) unless a reorder roll
lets one overtake. Faults, all seeded: drop and duplicate probabilities, reordering,
partitions of any shape and one-way cuts (checked at send and at delivery: a message in
flight when its link breaks is lost), and down zeros (a crash: everything in flight to
the old incarnation is lost; what it sent before still travels). A message to a zero that
is down is reported unreachable at once, as the real transport does for a down stream;
a MsgSnap lost on the way is reported FAILURE, a delivered one FINISH.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from raftcore import SnapshotStatus, raftpb

from zero.errors import UnavailableError, ZeroError
from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.replica.peer import PROTOCOL, Refusal
from zero.replica.ports import Clock
from zero.replica.transport import Transport
from zero.state.versions import ZERO_VERSION

from .trace import Trace

__all__ = ["SimNetwork", "SimTransport"]

JoinHandler = Callable[[tpb.JoinClusterRequest], Awaitable[tpb.JoinClusterResponse]]


class SimNetwork:
    """Links between zeros named by address; see the module doc for the faults."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, trace: Trace) -> None:
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.by_addr: dict[str, SimTransport] = {}  # the live incarnation at each address
        self.delay = (0.0005, 0.003)  # seconds, one way
        self.drop = 0.0
        self.duplicate = 0.0
        self.reorder = 0.0
        self.cut: set[tuple[str, str]] = set()  # one-way links that lose everything
        self._last_at: dict[tuple[str, str], float] = {}  # FIFO per link
        self.sent = self.delivered = self.lost = self.snapshots = 0

    # -- faults ----------------------------------------------------------------------------------
    def link_up(self, a: str, b: str) -> bool:
        return (a, b) not in self.cut

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between different groups (both ways); links within a group stay."""
        side = {addr: i for i, g in enumerate(groups) for addr in g}
        for a in side:
            for b in side:
                if side[a] != side[b]:
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()
        self.drop = self.duplicate = self.reorder = 0.0

    # -- transport -----------------------------------------------------------------------------
    def attach(self, addr: str, t: SimTransport) -> None:
        self.by_addr[addr] = t

    def detach(self, t: SimTransport) -> None:
        if self.by_addr.get(t.addr) is t:
            del self.by_addr[t.addr]

    def reachable(self, src: str, dst: str) -> SimTransport | None:
        t = self.by_addr.get(dst)
        return t if t is not None and self.link_up(src, dst) else None

    def _due(self, src: str, dst: str) -> float:
        at = self.loop.time() + self.rng.uniform(*self.delay)
        key = (src, dst)
        if self.reorder and self.rng.random() < self.reorder:
            return at  # may overtake what is in flight on this link
        at = max(at, self._last_at.get(key, 0.0))
        self._last_at[key] = at
        return at

    def send(self, src: SimTransport, dst_addr: str, msg: raftpb.Message) -> None:
        self.sent += 1
        dst = self.by_addr.get(dst_addr)
        host = src.host
        if dst is None:
            self._lost(src, msg, "down")
            host.report_unreachable(msg.to)
            return
        data = msg.SerializeToString()
        cluster_id = host.cluster_id
        if msg.type == raftpb.MsgSnap:
            self.snapshots += 1
        copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            if not self.link_up(src.addr, dst_addr) or (self.drop and self.rng.random() < self.drop):
                self._lost(src, msg, "dropped")
                continue
            self.loop.call_at(self._due(src.addr, dst_addr), self._arrive, src, dst, data, cluster_id,
                              context=dst.context)

    def _lost(self, src: SimTransport, msg: raftpb.Message, why: str) -> None:
        self.lost += 1
        self.trace.add("lost", why, src.addr, msg.to, msg.type, msg.term, msg.index)
        if msg.type == raftpb.MsgSnap:
            src.host.report_snapshot(msg.to, SnapshotStatus.FAILURE)

    def _arrive(self, src: SimTransport, dst: SimTransport, data: bytes, cluster_id: str) -> None:
        msg = raftpb.Message.FromString(data)
        if self.by_addr.get(dst.addr) is not dst or not self.link_up(src.addr, dst.addr):
            if self.by_addr.get(src.addr) is src:
                self._lost(src, msg, "in flight")
            return
        refusal, why = dst.admit(PROTOCOL, cluster_id, msg.from_, msg.to)
        if refusal != Refusal.ACCEPTED:
            self.trace.add("refused", src.addr, dst.addr, refusal)
            if self.by_addr.get(src.addr) is src and self.link_up(dst.addr, src.addr):
                self.loop.call_at(self._due(dst.addr, src.addr), src.refused_by_peer, msg.to, refusal, why,
                                  context=src.context)
            return
        self.delivered += 1
        self.trace.add("msg", src.addr, dst.addr, msg.type, msg.term, msg.index, msg.commit, msg.reject)
        dst.deliver(msg.from_, (msg,))
        if msg.type == raftpb.MsgSnap and self.by_addr.get(src.addr) is src:
            self.loop.call_at(self._due(dst.addr, src.addr), src.host.report_snapshot, msg.to,
                              SnapshotStatus.FINISH, context=src.context)


class SimTransport(Transport):
    """One zero incarnation's end of the SimNetwork (see the module doc)."""

    def __init__(self, network: SimNetwork, addr: str, context: contextvars.Context, *, log: Logger,
                 metrics: Metrics, clock: Clock, rng: random.Random) -> None:
        super().__init__(log=log, metrics=metrics, clock=clock, rng=rng)
        self.network = network
        self.addr = addr
        self.context = context  # deliveries run as this zero's (a crash cancels what they start)
        self.addrs: dict[int, str] = {}
        self.join_handler: JoinHandler | None = None
        network.attach(addr, self)

    def set_peers(self, addrs: Mapping[int, str]) -> None:
        me = self.host.raft_id
        self.addrs = {rid: a for rid, a in sorted(addrs.items()) if rid != me and a}
        self._peers = self.addrs  # type: ignore[assignment]  # the base class only counts them
        for rid in [r for r in self.last_heard if r not in self.addrs]:
            del self.last_heard[rid]

    def peer_addrs(self) -> dict[int, str]:
        return dict(self.addrs)

    def _link(self, rid: int) -> bool | None:
        addr = self.addrs.get(rid)
        if addr is None:
            return None
        return self.network.reachable(self.addr, addr) is not None and self.network.link_up(addr, self.addr)

    def peer_up(self, rid: int) -> bool:
        return self._link(rid) is True

    def peer_down(self, rid: int) -> bool:
        return self._link(rid) is False

    def send(self, msg: raftpb.Message) -> None:
        addr = self.addrs.get(msg.to)
        if addr is None or self._closed:
            self.host.report_unreachable(msg.to)
            if msg.type == raftpb.MsgSnap:
                self.host.report_snapshot(msg.to, SnapshotStatus.FAILURE)
            return
        self.network.send(self, addr, msg)

    async def join(self, peer: str, my_addr: str, raft_id: int, *, timeout: float) -> tpb.JoinClusterResponse:
        """JoinCluster through `peer` over the simulated network, following leader hints
        and retrying with seeded jitter until `timeout` (as zero/replica/join.py)."""
        deadline = self.clock.monotonic() + timeout
        target = peer
        req = tpb.JoinClusterRequest(raft_id=raft_id, addr=my_addr, protocol=tpb.RAFT_PROTOCOL_V1,
                                     version=ZERO_VERSION)
        net = self.network
        while True:
            redirect = ""
            dst = net.reachable(self.addr, target)
            if dst is not None and dst.join_handler is not None:
                await asyncio.sleep(net.rng.uniform(*net.delay))
                task = net.loop.create_task(_call(dst.join_handler, req), context=dst.context)
                await asyncio.wait([task], timeout=5.0)
                if task.done() and not task.cancelled() and net.link_up(target, self.addr):
                    await asyncio.sleep(net.rng.uniform(*net.delay))
                    resp, err = task.result()
                    if resp is not None:
                        return resp
                    assert err is not None
                    if not isinstance(err, UnavailableError):
                        raise err  # a refusal: final
                    redirect = dict(dst.hint).get("zero-leader-addr", "")
            if self.clock.monotonic() > deadline:
                raise UnavailableError(f"could not join the cluster through {peer} within {timeout:.0f}s")
            if redirect and redirect != target:
                target = redirect
                continue
            target = peer
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    @property
    def hint(self) -> list[tuple[str, str]]:
        host: Any = self.host
        return list(host.leader_hint())

    async def stop(self) -> None:
        self._closed = True
        self.network.detach(self)


async def _call(handler: JoinHandler, req: tpb.JoinClusterRequest,
                ) -> tuple[tpb.JoinClusterResponse | None, ZeroError | None]:
    try:
        return await handler(req), None
    except ZeroError as e:
        return None, e
