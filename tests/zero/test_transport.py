"""The peer transport on its own: admission rules, the bounded queue, batching over a
real stream, and chunked snapshots (grpc.aio on loopback, stand-in nodes)."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
import structlog

from raftcore import SnapshotStatus, raftpb
from support.aio import until
from zero.metrics import Metrics
from zero.pb import state_pb2
from zero.state.machine import ZeroState
from zero.replica.raft_service import add_raft_service
from zero.replica.transport import GRPC_OPTIONS, PROTOCOL, Refusal, Transport

pytestmark = pytest.mark.timeout(30)

CID = "3f1c7a52-0d7e-4c59-a1a8-6c0f1b2d9e10"


class FakeNode:
    """What the transport reads from a ZeroNode, recording what it is told."""

    def __init__(self, raft_id: int, zeros: dict[int, str], removed: tuple[int, ...] = (), cid: str = CID) -> None:
        self.log = structlog.wrap_logger(logging.getLogger(f"fake{raft_id}"))
        self.metrics = Metrics()
        self.raft_id = raft_id
        self.state = ZeroState()
        i = 0
        if cid:
            i += 1
            self.state.apply(i, state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id=cid)))
        for rid, addr in sorted(zeros.items()):
            i += 1
            self.state.apply(i, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=addr)))
        for rid in removed:
            i += 1
            self.state.apply(i, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=f"gone{rid}:1")))
            i += 1
            self.state.apply(i, state_pb2.Proposal(remove_zero=state_pb2.RemoveZero(raft_id=rid)))
        self.join_peers: dict[int, str] = {}
        self._join_cluster_id = ""
        self.raft_started = True
        self.stepped: list[raftpb.Message] = []
        self.unreachable: list[int] = []
        self.snapshots: list[tuple[int, SnapshotStatus]] = []
        self.removed_reasons: list[str] = []
        self.transport = Transport(log=self.log, metrics=self.metrics)
        self.transport.start(self)

    @property
    def cluster_id(self) -> str:
        return self.state.cluster_id or self._join_cluster_id

    def step_peer(self, m: raftpb.Message) -> None:
        self.stepped.append(m)

    def peer_lost(self, rid: int) -> None:
        pass

    def report_unreachable(self, rid: int) -> None:
        self.unreachable.append(rid)

    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None:
        self.snapshots.append((rid, status))

    def mark_removed(self, reason: str) -> None:
        self.removed_reasons.append(reason)

    def leader_hint(self) -> list[tuple[str, str]]:
        return []


def test_admission_rules():
    n = FakeNode(1, {1: "a:1", 2: "b:1"}, removed=(3,))
    a = n.transport.admit
    assert a(PROTOCOL, CID, 2, 1) == (Refusal.ACCEPTED, "")
    assert a(0, CID, 2, 1)[0] == Refusal.UNSUPPORTED_PROTOCOL
    assert a(PROTOCOL, "another", 2, 1)[0] == Refusal.CLUSTER_MISMATCH
    assert a(PROTOCOL, "", 2, 1)[0] == Refusal.CLUSTER_MISMATCH  # a sender that names no cluster
    assert a(PROTOCOL, CID, 2, 9)[0] == Refusal.NOT_A_MEMBER  # not addressed to us
    assert a(PROTOCOL, CID, 7, 1)[0] == Refusal.NOT_A_MEMBER
    refusal, why = a(PROTOCOL, CID, 3, 1)
    assert refusal == Refusal.REMOVED and "removed" in why
    # A zero that does not know its cluster yet (just bootstrapped) takes nothing.
    fresh = FakeNode(1, {}, cid="")
    assert fresh.transport.admit(PROTOCOL, CID, 2, 1)[0] == Refusal.NOT_A_MEMBER
    # A joiner that has not caught up (no zeros in its state) goes by the cluster id.
    joiner = FakeNode(4, {}, cid="")
    joiner.join_peers = {1: "a:1"}
    joiner._join_cluster_id = CID
    assert joiner.transport.admit(PROTOCOL, CID, 5, 4)[0] == Refusal.ACCEPTED


def test_full_queue_drops_and_reports_unreachable():
    async def main() -> None:
        n = FakeNode(1, {1: "h1:1", 2: "127.0.0.1:1"})
        n.transport.queue_messages = 5
        n.transport.set_peers({2: "127.0.0.1:1"})
        for i in range(8):  # the writer task has not run yet: nothing leaves the queue
            n.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1, commit=i))
        assert n.unreachable == [2, 2, 2]
        assert n.metrics.peer_dropped.labels("2")._value.get() == 3
        # An unknown peer: dropped and reported at once, never queued.
        n.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=9, from_=1, term=1))
        assert n.unreachable[-1] == 9
        # Port 1 refuses connections: the peer goes down, its queue is dropped.
        await until(lambda: n.transport.peer_down(2), 10)
        assert n.metrics.peer_up.labels("2")._value.get() == 0
        await n.transport.stop()
    asyncio.run(main())


async def _serve(node: FakeNode) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    port = server.add_insecure_port("127.0.0.1:0")
    add_raft_service(server, node, node.transport)  # type: ignore[arg-type]
    await server.start()
    return server, f"127.0.0.1:{port}"


def test_batches_arrive_in_order_and_snapshots_in_chunks():
    async def main() -> None:
        b = FakeNode(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve(b)
        a = FakeNode(1, {1: "h1:1", 2: addr})
        a.transport.set_peers({2: addr})
        for i in range(1, 2001):
            a.transport.send(raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=i,
                                            entries=[raftpb.Entry(index=i, term=1, data=b"x" * 64)]))
            if i % 100 == 0:
                await asyncio.sleep(0)
        await until(lambda: len(b.stepped) == 2000, 10)
        assert [m.index for m in b.stepped] == list(range(1, 2001))
        assert a.metrics.peer_up.labels("2")._value.get() == 1
        assert a.metrics.peer_sent_batches.labels("2")._value.get() < 2000  # batched
        # A 3.5 MiB snapshot goes in 1 MiB chunks and is stepped whole.
        data = bytes(range(256)) * (14 * 1024)
        snap = raftpb.Message(type=raftpb.MsgSnap, to=2, from_=1, term=1)
        snap.snapshot.data = data
        snap.snapshot.metadata.index = 77
        snap.snapshot.metadata.term = 1
        a.transport.send(snap)
        await until(lambda: a.snapshots == [(2, SnapshotStatus.FINISH)], 10)
        got = b.stepped[-1]
        assert got.type == raftpb.MsgSnap and got.snapshot.data == data and got.snapshot.metadata.index == 77
        assert b.metrics.snapshots_received.labels("ok")._value.get() == 1
        await a.transport.stop()
        await server.stop(0)
    asyncio.run(main())


def test_removed_sender_is_told():
    async def main() -> None:
        b = FakeNode(2, {1: "h1:1", 2: "h2:1"}, removed=(3,))
        server, addr = await _serve(b)
        a = FakeNode(3, {3: "h3:1", 2: addr})
        a.state = b.state  # same cluster id
        a.transport.set_peers({2: addr})
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=3, term=1))
        await until(lambda: bool(a.removed_reasons), 10)
        assert "removed" in a.removed_reasons[0]
        assert not b.stepped
        assert a.metrics.peer_refusals.labels("2", "REMOVED")._value.get() == 1
        await a.transport.stop()
        await server.stop(0)
    asyncio.run(main())


def test_peer_address_change_reconnects():
    async def main() -> None:
        b = FakeNode(2, {1: "h1:1", 2: "h2:1"})
        server1, addr1 = await _serve(b)
        server2, addr2 = await _serve(b)
        a = FakeNode(1, {1: "h1:1", 2: addr1})
        a.transport.set_peers({2: addr1})
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: len(b.stepped) == 1, 10)
        await server1.stop(0)
        a.transport.set_peers({2: addr2})  # an AddZero with the same raft id and a new address
        assert a.transport.peer_addrs() == {2: addr2}
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: len(b.stepped) == 2, 10)
        await a.transport.stop()
        await server2.stop(0)
    asyncio.run(main())


def test_commit_only_appends_superseded_by_a_later_append_are_dropped():
    """A commit-only append (no entries) is dropped when a later append of the same
    term in the same batch carries a commit index at least as high; every other message
    goes, in order."""
    from zero.replica.peer import superseded_dropped

    def app(index: int, commit: int, term: int = 2, entries: int = 0) -> raftpb.Message:
        return raftpb.Message(type=raftpb.MsgApp, to=2, term=term, index=index, commit=commit,
                              entries=[raftpb.Entry(index=index + 1 + k, term=term) for k in range(entries)])

    hb = raftpb.Message(type=raftpb.MsgHeartbeat, to=2, term=2, commit=5)
    msgs = [app(5, 5), hb, app(5, 5, entries=1), app(6, 6), app(6, 7, term=3), app(7, 6, term=2)]
    kept = superseded_dropped(msgs)
    # app(5,5) goes: app(5,5,+1 entry) has commit 5 >= 5; app(6,6) goes: app(7,6) (same
    # term, commit 6) follows; the term-3 append and the last one stay.
    assert [(m.type, m.index, m.commit, m.term, len(m.entries)) for m in kept] == [
        (raftpb.MsgHeartbeat, 0, 5, 2, 0), (raftpb.MsgApp, 5, 5, 2, 1), (raftpb.MsgApp, 6, 7, 3, 0),
        (raftpb.MsgApp, 7, 6, 2, 0)]
    # A higher commit in the earlier one keeps it; appends with entries always stay.
    assert len(superseded_dropped([app(5, 9), app(6, 6)])) == 2
    assert len(superseded_dropped([app(5, 5, entries=1), app(6, 6, entries=1)])) == 2


def test_a_commit_only_append_waits_briefly_for_the_next_append(monkeypatch):
    """The writer holds a lone commit-only append for COMMIT_HOLD (0.5 s here, to make
    the timing plain): an append sent within it supersedes the first (one message
    arrives, with the newer commit); alone, it goes when the hold ends. Nothing else is
    held."""
    import zero.replica.peer as peer

    monkeypatch.setattr(peer, "COMMIT_HOLD", 0.5)

    async def main() -> None:
        b = FakeNode(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve(b)
        a = FakeNode(1, {1: "h1:1", 2: addr})
        a.transport.set_peers({2: addr})
        loop = asyncio.get_running_loop()
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: len(b.stepped) == 1, 10)  # connected; heartbeats are never held
        t0 = loop.time()
        a.transport.send(raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=3, commit=3))
        await asyncio.sleep(0.05)
        a.transport.send(raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=3, commit=4,
                                        entries=[raftpb.Entry(index=4, term=1)]))
        await until(lambda: len(b.stepped) >= 2, 10)
        assert loop.time() - t0 < 0.4  # the append woke the writer: no waiting out the hold
        await asyncio.sleep(0.1)
        assert [(m.index, m.commit, len(m.entries)) for m in b.stepped[1:]] == [(3, 4, 1)]
        t1 = loop.time()
        a.transport.send(raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=4, commit=4))
        await until(lambda: len(b.stepped) == 3, 10)
        assert loop.time() - t1 >= 0.45  # alone, it went when the hold ended
        assert (b.stepped[2].index, b.stepped[2].commit, len(b.stepped[2].entries)) == (4, 4, 0)
        await a.transport.stop()
        await server.stop(0)
    asyncio.run(main())
