"""The peer transport between zeros: the peer wire (framed RaftBatches over TCP,
zero/replica/wire*.py) and the `Raft` gRPC service (zero/pb/raft_transport.proto).

Outbound, one `Peer` (zero/replica/peer.py) per remote zero owns a gRPC channel (the
handshake, snapshots) and one link: the wire when the peer offers it, else a long-lived
gRPC client stream. `Transport.send()` is called from the Ready loop and never awaits.

Where the wire listens: on a free port of the gRPC listener's host, chosen by the OS at
start (`listen_wire`), not a port of its own in the SPEC's port set. Peers learn it from
the gRPC handshake every connection begins with (peer.py): the gRPC port stays the only
address a zero is known by (`--my`), and the wire needs no flag. A zero offers the wire
only when `--my` names its gRPC port itself; behind a proxy or a port mapping (`--my`'s
port differs) only the gRPC port is known to be forwarded, so its peers keep sending
over gRPC (the fault proxy of tests/fault relies on that: every byte between zeros
passes through it). Rules:

- The Ready loop never blocks on a peer. A full queue, or a peer that is down (between
  reconnect attempts), drops the message and calls `report_unreachable`, so Raft falls
  back to probing that follower instead of assuming the message arrived.
- Messages are handed to the transport before the Ready's entries are persisted
  (zero/replica/ready_loop.py), and nothing on the send path does I/O, so heartbeats and
  appends never wait behind an fsync or an apply (thesis §10.2.1).
- MsgSnap goes over `SendSnapshot` in chunks (its own task per peer); the outcome is
  reported to Raft with `report_snapshot(FINISH|FAILURE)`.

Inbound, the wire listener (zero/replica/wire_server.py) and the Raft service
(zero/replica/raft_service.py) admit a batch only if it
names this cluster, this node as the receiver, and a sender that is a member and was not
removed (`Transport.admit`); every message of an admitted batch is stepped at once. A
refusal ends the stream with its reason; a sender told REMOVED marks its node removed
(`ZeroNode.removed`), and the app exits on it.

A sender told CLUSTER_MISMATCH persistently is a zero whose cluster was re-created
(`zero run --force-new-cluster` on another zero: the new cluster has a new id and lists
this zero as removed). It exits the same way, with a message saying so and what to do,
but only on evidence no stray or misconfigured peer can fake alone: every refusal of a
peer counts only once it has repeated for MISMATCH_PERSIST seconds with nothing admitted
from that peer since, and then either a majority of the configured peers refuse so, or
every peer refuses so or is silent (no batch admitted from it for that long, and its
stream not taking ours): a zero that hears from any peer of its own cluster never stops.

The transport is built by the app and handed to ZeroNode as its PeerTransport
(zero/replica/ports.py); the node starts it with itself as the PeerHost. Time (liveness,
mismatch windows, backoffs) comes from the injected Clock, jitter from the injected
random source.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Iterable, Mapping

import grpc

from raftcore import RaftError, SnapshotStatus, raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.replica.join import join_cluster
from zero.net import split_addr
from zero.replica.peer import GRPC_OPTIONS, PROTOCOL, Peer, Refusal, refusal_name
from zero.replica.ports import Clock, PeerHost, SystemClock
from zero.replica.wire_server import WireServer
from zero.replica.wire_tls import WireTls
from zero.security import ServerTls

__all__ = ["Transport", "PeerHost", "GRPC_OPTIONS", "PROTOCOL", "Refusal", "QUEUE_MESSAGES", "MISMATCH_PERSIST",
           "MISMATCH_REFUSALS"]

QUEUE_MESSAGES = 4096  # per peer; beyond this new messages are dropped

# CLUSTER_MISMATCH from a peer counts once it has lasted this long (seconds) over at least
# MISMATCH_REFUSALS refusals, with no batch admitted from that peer meanwhile and no gap
# of more than twice this long between two refusals.
MISMATCH_PERSIST = 5.0
MISMATCH_REFUSALS = 3
# The receiver's words in a CLUSTER_MISMATCH refusal (Transport.admit): its cluster id.
_THEIR_CLUSTER = re.compile(r"belongs to cluster (\S+?),")


class _Mismatch:
    """CLUSTER_MISMATCH refusals from one peer, since the last batch admitted from it."""

    __slots__ = ("first", "last", "count", "cluster_id")

    def __init__(self, now: float, cluster_id: str) -> None:
        self.first = self.last = now
        self.count = 0
        self.cluster_id = cluster_id


class Transport:
    """Every outbound peer of one ZeroNode, and the admission rules for inbound batches."""

    def __init__(self, *, log: Logger, metrics: Metrics, credentials: grpc.ChannelCredentials | None = None,
                 queue_messages: int = QUEUE_MESSAGES, clock: Clock | None = None,
                 rng: random.Random | None = None, tls: ServerTls | None = None) -> None:
        self.log = log
        self.metrics = metrics
        self.credentials = credentials  # peer channels and the join call; the app swaps it on a TLS reload
        self.queue_messages = queue_messages
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.wire_tls = WireTls(tls) if tls is not None else None  # the wire's TLS, with --tls-dir
        self.wire_port = 0  # the wire port this zero offers in handshakes (0: none)
        self._wire: WireServer | None = None
        self._host: PeerHost | None = None
        self._peers: dict[int, Peer] = {}
        self._closed = False
        # Monotonic time of the last admitted batch from each peer: liveness for the
        # membership checks, which must not wait for Raft's CheckQuorum round.
        self.last_heard: dict[int, float] = {}
        self._mismatch: dict[int, _Mismatch] = {}  # peer -> its CLUSTER_MISMATCH refusals

    def start(self, host: PeerHost) -> None:
        """Deliver what peers send to `host` from now on."""
        self._host = host

    @property
    def host(self) -> PeerHost:
        if self._host is None:
            raise RuntimeError("the transport has not been started with its node")
        return self._host

    async def join(self, peer: str, my_addr: str, raft_id: int, *, timeout: float) -> tpb.JoinClusterResponse:
        """JoinCluster through `peer`, following the leader (zero/replica/join.py)."""
        return await join_cluster(peer, my_addr, raft_id, timeout=timeout, logger=self.log, clock=self.clock,
                                  rng=self.rng, credentials=self.credentials)

    # -- peers ---------------------------------------------------------------------------------
    def set_peers(self, addrs: Mapping[int, str]) -> None:
        """Make the outbound peers exactly `addrs` (raft id -> HOST:PORT, self excluded).
        A peer whose address changed reconnects to the new one."""
        if self._closed:
            return
        me = self.host.raft_id
        for rid in [r for r in self._peers if r not in addrs or r == me]:
            self._peers.pop(rid).close()
            self.last_heard.pop(rid, None)
            self._mismatch.pop(rid, None)
        for rid, addr in addrs.items():
            if rid == me or not addr:
                continue
            p = self._peers.get(rid)
            if p is None:
                self._peers[rid] = Peer(self, rid, addr)
            elif p.addr != addr:
                self.log.info("peer address changed", peer=rid, old=p.addr, new=addr)
                p.close()
                self._peers[rid] = Peer(self, rid, addr)

    def peer_addrs(self) -> dict[int, str]:
        return {rid: p.addr for rid, p in self._peers.items()}

    def peer_up(self, rid: int) -> bool:
        p = self._peers.get(rid)
        return p is not None and p.up is True

    def peer_down(self, rid: int) -> bool:
        p = self._peers.get(rid)
        return p is not None and p.up is False

    def heard_within(self, rid: int, seconds: float) -> bool:
        t = self.last_heard.get(rid)
        return t is not None and self.clock.monotonic() - t <= seconds

    async def listen_wire(self, grpc_addr: str, grpc_port: int, my_addr: str, *, started: Callable[[], bool]) -> int:
        """Serve the peer wire on a free port of `grpc_addr`'s host and offer it, unless
        `my_addr` (what peers dial) names another port than `grpc_port` (see the module
        doc): the port offered, or 0. `started` says when Raft runs (frames before are
        refused)."""
        if split_addr(my_addr)[1] != grpc_port:
            self.log.info("peer wire not offered: --my names another port than gRPC's (a proxy or port mapping); "
                          "peers send Raft messages to this zero over gRPC", my=my_addr, grpc_port=grpc_port)
            return 0
        server = self._wire = WireServer(self, started=started, tls=self.wire_tls)
        self.wire_port = await server.listen(split_addr(grpc_addr)[0])
        self.log.info("peer wire listening", port=self.wire_port, tls=self.wire_tls is not None)
        return self.wire_port

    async def stop(self) -> None:
        self._closed = True
        if self._wire is not None:
            self.wire_port = 0
            await self._wire.close()
        peers = list(self._peers.values())
        self._peers.clear()
        for p in peers:
            p.close()
        await asyncio.gather(*(p.wait_closed() for p in peers), return_exceptions=True)

    # -- sending (called from the Ready loop: never awaits) ---------------------------------------
    def send(self, msg: raftpb.Message) -> None:
        p = self._peers.get(msg.to)
        if p is None:
            self.host.report_unreachable(msg.to)
            if msg.type == raftpb.MsgSnap:
                self.host.report_snapshot(msg.to, SnapshotStatus.FAILURE)
            return
        if msg.type == raftpb.MsgSnap:
            p.send_snapshot(msg)
        else:
            p.enqueue(msg)

    # -- receiving -------------------------------------------------------------------------------
    def admit(self, protocol: int, cluster_id: str, from_id: int, to_id: int) -> tuple[Refusal.Refusal, str]:
        """(ACCEPTED, "") or a refusal with a reason a person understands."""
        node = self.host
        if protocol != PROTOCOL:
            return Refusal.UNSUPPORTED_PROTOCOL, f"peer protocol {protocol} is not supported (this zero speaks {PROTOCOL})"
        mine = node.cluster_id
        if not mine:
            # Bootstrapped a moment ago (the id is not minted yet) or restarting: we
            # cannot tell whether the sender is one of ours, so we take nothing.
            return Refusal.NOT_A_MEMBER, f"zero {node.raft_id} does not know its cluster id yet"
        if cluster_id != mine:
            return Refusal.CLUSTER_MISMATCH, (f"zero {node.raft_id} belongs to cluster {mine}, "
                                              f"the sender {from_id} to cluster {cluster_id or '(none)'}")
        if to_id != node.raft_id:
            return Refusal.NOT_A_MEMBER, f"this is zero {node.raft_id}, not {to_id}"
        state = node.state
        if state.is_removed(from_id, zero=True):
            return Refusal.REMOVED, f"zero {from_id} was removed from cluster {mine}; a removed id never rejoins"
        zeros = state.zeros
        # A joiner that has not caught up yet has no members in its state: the cluster
        # id (a random UUID) is what it has to go on.
        if zeros and from_id not in zeros and from_id not in node.join_peers:
            return Refusal.NOT_A_MEMBER, f"zero {from_id} is not a member of cluster {mine}"
        return Refusal.ACCEPTED, ""

    def deliver(self, from_id: int, messages: Iterable[raftpb.Message]) -> None:
        """Step each message now, in order (runs on the event loop, between Readies)."""
        self.last_heard[from_id] = self.clock.monotonic()
        self._mismatch.pop(from_id, None)  # it names our cluster
        node = self.host
        for m in messages:
            try:
                node.step_peer(m)
            except RaftError as e:  # e.g. a forwarded proposal with no leader: the proposer retries
                self.log.debug("peer message not stepped", peer=from_id, type=m.type, error=str(e))

    def refused_by_peer(self, peer: int, refusal: int, message: str) -> None:
        self.metrics.peer_refusals.labels(str(peer), refusal_name(refusal)).inc()
        if refusal == Refusal.REMOVED:
            self.host.mark_removed(f"zero {peer} says: {message}")
        elif refusal == Refusal.CLUSTER_MISMATCH:
            self._refused_as_foreign(peer, message)
        else:
            self._mismatch.pop(peer, None)

    def _refused_as_foreign(self, peer: int, message: str) -> None:
        """Peer `peer` says we belong to another cluster. When that is persistent and
        shared (see the module doc), this zero's cluster was re-created without it: it
        stops, as a removed zero does, saying what happened and what to do."""
        now = self.clock.monotonic()
        m = self._mismatch.get(peer)
        found = _THEIR_CLUSTER.search(message)
        theirs = found.group(1) if found else ""
        if (m is None or now - m.last > 2 * MISMATCH_PERSIST  # a new episode, not a continued one
                or (theirs and m.cluster_id and theirs != m.cluster_id)):
            m = self._mismatch[peer] = _Mismatch(now, theirs)
        m.last = now
        m.count += 1
        peers = set(self._peers)
        if not peers:
            return
        foreign = {rid for rid, x in self._mismatch.items()
                   if rid in peers and x.count >= MISMATCH_REFUSALS and now - x.first >= MISMATCH_PERSIST
                   and now - x.last <= 2 * MISMATCH_PERSIST}
        if not foreign:
            return
        majority = len(foreign) >= len(peers) // 2 + 1
        # Silent: nothing admitted from it lately, and its stream is not taking our batches.
        silent = all(rid in foreign or not (self.heard_within(rid, MISMATCH_PERSIST) or self.peer_up(rid))
                     for rid in peers)
        if not (majority or silent):
            return
        mine = self.host.cluster_id
        ids = sorted({self._mismatch[rid].cluster_id for rid in foreign} - {""})
        names = ", ".join(f"zero {rid}" for rid in sorted(foreign))
        self.host.mark_removed(
            f"this zero (raft id {self.host.raft_id}) belongs to cluster {mine or '(none)'}, but {names} "
            f"({len(foreign)} of its {len(peers)} peers) {'belongs' if len(foreign) == 1 else 'belong'} to cluster "
            f"{' / '.join(ids) or '(another)'} and refused its messages for over {MISMATCH_PERSIST:g}s: the "
            f"cluster was most likely forced anew "
            f"(zero run --force-new-cluster on another zero), which removed this zero. Start it with a fresh "
            f"data dir and --peer HOST:PORT of a zero of the new cluster to join that cluster (its old data dir "
            f"cannot rejoin)")
