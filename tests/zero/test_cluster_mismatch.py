"""A zero whose peers refuse it with CLUSTER_MISMATCH (its cluster was re-created by
--force-new-cluster on another zero) stops with a message saying so (issue "Operators'
side", item 5) — but only on persistent, shared evidence: a single stray or
misconfigured foreign peer never stops a zero that hears from its own cluster.
The transport alone, over real gRPC streams on loopback, with stand-in nodes;
MISMATCH_PERSIST is shortened so the tests take a second, not five."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
import structlog

from raftcore import SnapshotStatus, raftpb
from support import free_port
from zero.replica import transport as transport_mod
from zero.metrics import Metrics
from zero.pb import state_pb2
from zero.state.machine import ZeroState
from zero.replica.raft_service import add_raft_service
from zero.replica.transport import GRPC_OPTIONS, Transport

pytestmark = pytest.mark.timeout(30)

OURS = "11111111-1111-4111-8111-111111111111"
THEIRS = "22222222-2222-4222-8222-222222222222"
PERSIST = 0.6


class Node:
    """What the transport reads from a ZeroNode, recording what it is told."""

    def __init__(self, raft_id: int, zeros: dict[int, str], cid: str) -> None:
        self.log = structlog.wrap_logger(logging.getLogger(f"mismatch{raft_id}"))
        self.metrics = Metrics()
        self.raft_id = raft_id
        self.state = ZeroState()
        self.state.apply(1, state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id=cid)))
        for i, (rid, addr) in enumerate(sorted(zeros.items()), start=2):
            self.state.apply(i, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=addr)))
        self.join_peers: dict[int, str] = {}
        self.raft_started = True
        self.stepped: list[raftpb.Message] = []
        self.removed_reasons: list[str] = []
        self.transport = Transport(log=self.log, metrics=self.metrics)
        self.transport.start(self)

    @property
    def cluster_id(self) -> str:
        return self.state.cluster_id

    def step_peer(self, m: raftpb.Message) -> None:
        self.stepped.append(m)

    def peer_lost(self, rid: int) -> None:
        pass

    def report_unreachable(self, rid: int) -> None:
        pass

    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None:
        pass

    def mark_removed(self, reason: str) -> None:
        if not self.removed_reasons:  # as ZeroNode.mark_removed: the first reason stands
            self.removed_reasons.append(reason)

    def leader_hint(self) -> list[tuple[str, str]]:
        return []


class Rig:
    """The servers and transports a test started, stopped in `close` whatever happened."""

    def __init__(self) -> None:
        self.servers: list[grpc.aio.Server] = []
        self.nodes: list[Node] = []

    def node(self, raft_id: int, zeros: dict[int, str], cid: str) -> Node:
        n = Node(raft_id, zeros, cid)
        self.nodes.append(n)
        return n

    async def serve(self, node: Node) -> str:
        server = grpc.aio.server(options=GRPC_OPTIONS)
        port = server.add_insecure_port("127.0.0.1:0")
        add_raft_service(server, node, node.transport)  # type: ignore[arg-type]
        self.servers.append(server)
        await server.start()
        return f"127.0.0.1:{port}"

    async def close(self) -> None:
        for n in self.nodes:
            await n.transport.stop()
        for s in self.servers:
            await s.stop(0)


def run(body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        rig = Rig()
        try:
            await body(rig)
        finally:
            await rig.close()
    asyncio.run(main())


def dead_addr() -> str:
    return f"127.0.0.1:{free_port()}"  # nobody listens there


async def campaign(node: Node, peers: list[int], seconds: float) -> None:
    """Send to every peer the way a candidate does: a message every 50 ms."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and not node.removed_reasons:
        for rid in peers:
            node.transport.send(raftpb.Message(type=raftpb.MsgPreVote, to=rid, from_=node.raft_id, term=2))
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def short_persist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_mod, "MISMATCH_PERSIST", PERSIST)


def test_forced_anew_every_peer_heard_from_refuses_it_stops_with_what_to_do() -> None:
    async def body(rig: Rig) -> None:
        # Zero 1 was forced into a new cluster; zero 3 is dead. Old zero 2 restarts.
        forced = rig.node(1, {1: "x:1"}, THEIRS)
        addr1 = await rig.serve(forced)
        old = rig.node(2, {1: addr1, 2: "self:1", 3: dead_addr()}, OURS)
        old.transport.set_peers({rid: z.addr for rid, z in old.state.zeros.items()})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await campaign(old, [1, 3], 10 * PERSIST)
        assert old.removed_reasons, "the old zero did not stop"
        assert loop.time() - t0 >= PERSIST  # never on the first refusals
        why = old.removed_reasons[0]
        for words in (OURS, THEIRS, "zero 1 (1 of its 2 peers) belongs", "--force-new-cluster", "fresh data dir",
                      "--peer"):
            assert words in why, why
        assert not forced.stepped  # nothing of the old cluster reached the new one
    run(body)


def test_a_foreign_peer_never_stops_a_zero_that_its_own_cluster_answers() -> None:
    async def body(rig: Rig) -> None:
        # A healthy 3-zero cluster; zero 2's address now leads to a zero of another
        # cluster (misconfiguration). Zero 1 still reaches zero 3 of its own cluster.
        addr2 = await rig.serve(rig.node(7, {7: "x:1"}, THEIRS))
        peer3 = rig.node(3, {1: "self:1", 2: addr2, 3: "x:1"}, OURS)
        addr3 = await rig.serve(peer3)
        me = rig.node(1, {1: "self:1", 2: addr2, 3: addr3}, OURS)
        me.transport.set_peers({2: addr2, 3: addr3})
        await campaign(me, [2, 3], 6 * PERSIST)
        assert me.removed_reasons == []
        assert me.metrics.peer_refusals.labels("2", "CLUSTER_MISMATCH")._value.get() >= 3
        assert peer3.stepped  # its own cluster took its messages all along
    run(body)


def test_a_foreign_peer_whose_refusals_stop_is_forgiven() -> None:
    async def body(rig: Rig) -> None:
        # Refusals that do not last MISMATCH_PERSIST (a peer briefly confused, then
        # back in the cluster: a batch is admitted from it) never count.
        addr = await rig.serve(rig.node(2, {2: "x:1"}, THEIRS))
        me = rig.node(1, {1: "self:1", 2: addr}, OURS)
        me.transport.set_peers({2: addr})
        for _ in range(4):
            await campaign(me, [2], PERSIST * 0.6)
            me.transport.deliver(2, [])  # it spoke as one of ours
        assert me.removed_reasons == []
    run(body)


def test_a_majority_of_the_peers_refusing_stops_it_even_if_one_answers() -> None:
    async def body(rig: Rig) -> None:
        # Five zeros; three were re-created into a new cluster (forced anew, then
        # rejoined there), one is still of ours: 1 + 1 of 5 can never be a quorum.
        addrs = {1: "self:1"}
        for rid in (2, 3, 4):
            addrs[rid] = await rig.serve(rig.node(rid, {rid: "x:1"}, THEIRS))
        ours5 = rig.node(5, {1: "self:1", 5: "x:1"}, OURS)
        addrs[5] = await rig.serve(ours5)
        me = rig.node(1, addrs, OURS)
        me.transport.set_peers({rid: a for rid, a in addrs.items() if rid != 1})
        await campaign(me, [2, 3, 4, 5], 10 * PERSIST)
        assert me.removed_reasons, "it did not stop"
        assert "3 of its 4 peers) belong" in me.removed_reasons[0], me.removed_reasons[0]
        assert ours5.stepped  # the one peer of ours took its messages: not a silent cluster
    run(body)
