"""Clusters of ZeroNodes in one process, over the real peer transport (grpc.aio on
loopback, ports chosen by the OS): joining, failover, restarts, removal, leadership
transfer, snapshot catch-up, and refusals between clusters."""

from __future__ import annotations

import asyncio
import logging
import shutil

import grpc
import pytest
import structlog

from raftcore import raftpb
from zero.errors import FailedPreconditionError, UnavailableError
from zero.metrics import Metrics
from zero.replica.duties import ensure_cluster_identity, run_leader_task
from zero.replica.node import NodeOptions, ZeroNode
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.pb import state_pb2
from zero.replica.ports import WalStorage
from zero.replica.proposals import ConfChangeDroppedError
from zero.replica.raft_service import add_raft_service
from zero.replica.transport import GRPC_OPTIONS, PROTOCOL, Transport
from zero.replica.wal import open_wal

from support.aio import until
from zeroapps import bare_node

TICK = 0.02
ELECTION_TICKS = 10  # 200 ms election timeout: fast failover in tests


def _logger(name: str):  # type: ignore[no-untyped-def]
    return structlog.wrap_logger(logging.getLogger(name)).bind(zero=name)




class Zero:
    """One zero: a ZeroNode, its WAL, and the grpc.aio server its Raft service runs on."""

    def __init__(self, root, name: str, **opts) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.name = name
        self.data_dir = str(root / name)
        self.port = 0
        self.opts = opts
        self.node: ZeroNode | None = None
        self.storage: WalStorage | None = None  # the node's WAL, for inspection (compaction)
        self.server: grpc.aio.Server | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, peer: str = "", **extra) -> ZeroNode:  # type: ignore[no-untyped-def]
        server = grpc.aio.server(options=GRPC_OPTIONS)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        opts = dict(tick_seconds=TICK, election_ticks=ELECTION_TICKS, join_timeout=20.0)
        opts.update(self.opts)
        opts.update(extra)
        log = _logger(self.name)
        transport = Transport(log=log, metrics=Metrics())
        storage = open_wal(self.data_dir, log)
        node = bare_node(NodeOptions(data_dir=self.data_dir, my_addr=self.addr, peer=peer, **opts), logger=log,
                         transport=transport, storage=storage)
        node.on_leadership.append(run_leader_task(node, lambda: ensure_cluster_identity(node), "cluster-identity"))
        add_raft_service(server, node, transport)
        await server.start()
        self.server, self.node, self.storage = server, node, storage
        try:
            await node.start()
        except BaseException:
            await server.stop(0)
            self.server = self.node = None
            raise
        return node

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()
        if self.server is not None:
            await self.server.stop(0)
        self.node = self.server = None

    @property
    def up(self) -> bool:
        return self.node is not None


class Cluster:
    def __init__(self, root, n: int, **opts) -> None:  # type: ignore[no-untyped-def]
        self.zeros = [Zero(root, f"z{i + 1}", **opts) for i in range(n)]

    async def start(self, *, concurrent: bool = False) -> None:
        first = self.zeros[0]
        n1 = await first.start()
        await until(lambda: n1.is_leader and bool(n1.state.cluster_id) and 1 in n1.state._state.zeros, 20,
                    message="the first zero leads")
        if concurrent:
            await asyncio.gather(*(z.start(peer=first.addr) for z in self.zeros[1:]))
        else:
            for z in self.zeros[1:]:
                await z.start(peer=first.addr)
        await self.wait_voters(len(self.zeros))

    def nodes(self) -> list[ZeroNode]:
        """The running zeros that are still members."""
        return [z.node for z in self.zeros if z.node is not None and not z.node.removed.is_set()]

    def leader(self) -> ZeroNode | None:
        leads = [n for n in self.nodes() if n.is_leader]
        return leads[0] if len(leads) == 1 else None

    async def wait_leader(self, timeout: float = 10.0) -> ZeroNode:
        await until(lambda: self.leader() is not None
                    and all(n.leader_id == self.leader().raft_id for n in self.nodes()),  # type: ignore[union-attr]
                    timeout, message="one leader known to all")
        lead = self.leader()
        assert lead is not None
        return lead

    async def wait_voters(self, n: int) -> None:
        async def check() -> bool:
            lead = self.leader()
            return lead is not None and len(lead.raft_status().voters) == n
        await until(lambda: (lambda l: l is not None and len(l.raft_status().voters) == n
                             and not l.raft_status().learners)(self.leader()), 20.0, message=f"{n} voters")

    async def write(self, i: int, timeout: float = 10.0) -> int:
        """Propose through whoever leads, retrying while there is none; returns the index."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        p = state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=3))
        while True:
            lead = self.leader()
            try:
                if lead is not None:
                    p.key = p.key or lead.new_key()
                    return (await lead.propose(p, timeout=2.0)).index
            except UnavailableError:
                pass
            if loop.time() > deadline:
                raise AssertionError("no write succeeded before the deadline")
            await asyncio.sleep(0.02)

    async def converged(self, timeout: float = 15.0) -> None:
        def same() -> bool:
            ns = self.nodes()
            return len({n.state.snapshot() for n in ns}) == 1 and len({n.applied for n in ns}) == 1
        await until(same, timeout, message="replicas converge")

    async def stop(self) -> None:
        for z in self.zeros:
            if z.node is not None:
                object.__setattr__(z.node.opts, "transfer_on_stop", 0.0)  # faster teardown
            await z.stop()


def run(coro_fn, root, n: int, *, limit: float = 30.0, **opts) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        c = Cluster(root, n, **opts)
        try:
            await asyncio.wait_for(coro_fn(c), limit)
        except TimeoutError:
            for t in asyncio.all_tasks():
                t.print_stack()
            raise
        finally:
            await asyncio.wait_for(c.stop(), 10.0)
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_bootstrap_and_join_three(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        ids = sorted(lead.state._state.zeros)
        assert ids == [1, 2, 3]
        assert {z.node.raft_id for z in c.zeros} == {1, 2, 3}  # type: ignore[union-attr]
        for i in range(20):
            await c.write(i)
        await c.converged()
        cid = lead.state.cluster_id
        assert all(n.state.cluster_id == cid for n in c.nodes())
        # Peers know each other's addresses from the replicated state.
        for z in c.zeros:
            assert z.node.transport.peer_addrs() == {  # type: ignore[union-attr]
                o.node.raft_id: o.addr for o in c.zeros if o is not z}  # type: ignore[union-attr]
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_five_concurrent_joins_all_succeed(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start(concurrent=True)  # four joins at once: one conf change at a time, none lost
        lead = await c.wait_leader()
        assert sorted(lead.state._state.zeros) == [1, 2, 3, 4, 5]
        assert sorted(lead.raft_status().voters) == [1, 2, 3, 4, 5]
        await c.write(1)
        await c.converged()
    run(body, tmp_path, 5)


@pytest.mark.timeout(40)
def test_joins_dialing_the_first_zero_while_it_starts(tmp_path):
    """As bench/replication_bench.py --processes starts its zeros: the joiners dial the
    first zero at once, before it leads, has a cluster id or has registered itself. They
    are told to retry until it has (a join in between was handed raft id 1 and made the
    leader demote itself: test_zero_node.py::test_join_before_the_first_leader_registered_itself)."""
    async def body(c: Cluster) -> None:
        first = c.zeros[0]
        await first.start()
        await asyncio.gather(*(z.start(peer=first.addr) for z in c.zeros[1:]))
        await c.wait_voters(3)
        lead = await c.wait_leader()
        assert sorted(lead.state._state.zeros) == [1, 2, 3]
        assert all(n.fatal is None for n in c.nodes())
        await c.write(1)
        await c.converged()
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_leader_stop_new_leader_then_restart_catches_up(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        for i in range(10):
            await c.write(i)
        old = next(z for z in c.zeros if z.node is lead)
        old_id = lead.raft_id
        object.__setattr__(lead.opts, "transfer_on_stop", 0.0)  # like a crash: no hand-over
        await old.stop()
        new = await c.wait_leader(5.0)
        assert new.raft_id != old_id
        for i in range(10, 30):
            await c.write(i)
        await old.start()  # restart on its data dir: same identity, catches up
        assert old.node.raft_id == old_id  # type: ignore[union-attr]
        await c.converged()
        assert len(old.node.state.state_copy().groups) > 0  # type: ignore[union-attr]
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_full_restart_keeps_state(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        for i in range(15):
            await c.write(i)
        await c.converged()
        before = c.nodes()[0].state.snapshot()
        cid = c.nodes()[0].state.cluster_id
        await c.stop()
        await asyncio.gather(*(z.start(peer="127.0.0.1:1") for z in c.zeros))  # --peer is ignored
        await c.wait_leader()
        await c.converged()
        assert all(n.state.cluster_id == cid for n in c.nodes())
        assert c.nodes()[0].state.snapshot() == before
        await c.write(99)
        await c.converged()
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_remove_zero_and_refusals(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        victim = next(z for z in c.zeros if z.node is not lead)
        vid = victim.node.raft_id  # type: ignore[union-attr]
        await lead.remove_zero(vid)
        assert vid not in lead.state._state.zeros and lead.state.is_removed(vid, zero=True)
        assert vid not in lead.raft_status().voters
        await until(lambda: victim.node.removed.is_set(),  # type: ignore[union-attr]
                    5.0, message="the removed zero learns it")
        with pytest.raises(FailedPreconditionError):
            await lead.remove_zero(vid)  # already removed
        await victim.stop()
        await c.write(1)
        # Remove the leader itself: it hands leadership over, the new leader removes it.
        old_id = lead.raft_id
        await lead.remove_zero(old_id)
        await until(lambda: lead.removed.is_set(), 5.0, message="the old leader is removed")
        new = await c.wait_leader()
        assert new.raft_id != old_id
        await until(lambda: old_id not in new.state._state.zeros, 5.0, message="the new leader applied the removal")
        old_zero = next(z for z in c.zeros if z.node is lead)
        await old_zero.stop()
        # One zero left: it cannot be removed.
        await until(lambda: len(new.raft_status().voters) == 1, 5.0)
        with pytest.raises(FailedPreconditionError):
            await new.remove_zero(new.raft_id)
        await c.write(2)
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_removal_refused_without_live_quorum(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        down, alive = [z for z in c.zeros if z.node is not lead]
        did = down.node.raft_id  # type: ignore[union-attr]
        await down.stop()
        await until(lambda: lead.transport.peer_down(did), 5.0, message="peer seen down")
        with pytest.raises(FailedPreconditionError, match="no quorum"):
            await lead.remove_zero(alive.node.raft_id)  # type: ignore[union-attr]
        # Removing the dead one is fine: the two live zeros remain a quorum.
        await lead.remove_zero(did)
        assert sorted(lead.raft_status().voters) == sorted(
            z.node.raft_id for z in c.zeros if z.node is not None)  # type: ignore[union-attr]
        await c.write(1)
    run(body, tmp_path, 3)


@pytest.mark.timeout(30)
def test_transfer_leadership(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        target = next(n for n in c.nodes() if n is not lead)
        got = await lead.transfer_leadership(target.raft_id)
        assert got == target.raft_id
        assert (await c.wait_leader()) is target
        got = await target.transfer_leadership()  # best follower
        assert got != target.raft_id
        await c.write(1)
        with pytest.raises(UnavailableError):
            await target.transfer_leadership()  # no longer the leader
    run(body, tmp_path, 3)


@pytest.mark.timeout(40)
def test_lagging_zero_catches_up_by_snapshot(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        lag = next(z for z in c.zeros if z.node is not lead)
        await lag.stop()
        for i in range(1200):  # > snapshot_every + CATCHUP_ENTRIES: the log is compacted
            await c.write(i)
        lead = await c.wait_leader()
        assert next(z for z in c.zeros if z.node is lead).storage.first_index() > 10  # type: ignore[union-attr]
        sent_before = lead.metrics.snapshots_sent.labels("ok")._value.get()
        await lag.start()
        await c.converged(20.0)
        assert lead.metrics.snapshots_sent.labels("ok")._value.get() > sent_before
        assert lag.node.metrics.snapshots_received.labels("ok")._value.get() >= 1  # type: ignore[union-attr]
    run(body, tmp_path, 3, snapshot_every=100)


@pytest.mark.timeout(40)
def test_zero_joining_after_compaction_gets_a_fresh_snapshot(tmp_path):
    """The stored snapshot predates the joiner's admission (raftcore refuses a snapshot
    whose configuration lacks the recipient); the leader sends the state as applied."""
    async def body(c: Cluster) -> None:
        first, second = c.zeros
        n1 = await first.start()
        await until(lambda: n1.is_leader and 1 in n1.state._state.zeros, 20, message="the first zero leads")
        for i in range(1200):  # > snapshot_every + CATCHUP_ENTRIES: the log is compacted
            await c.write(i)
        assert first.storage.first_index() > 10  # type: ignore[union-attr]
        await second.start(peer=first.addr)
        await c.wait_voters(2)
        await c.converged(20.0)
        assert second.node.metrics.snapshots_received.labels("ok")._value.get() >= 1  # type: ignore[union-attr]
    run(body, tmp_path, 2, snapshot_every=100)


@pytest.mark.timeout(40)
def test_emptied_data_dir_cannot_talk_to_the_old_cluster(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        z3 = next(z for z in c.zeros if z.node is not lead)
        rid = z3.node.raft_id  # type: ignore[union-attr]
        old_cid = lead.state.cluster_id
        object.__setattr__(z3.node.opts, "transfer_on_stop", 0.0)  # type: ignore[union-attr]
        await z3.stop()
        shutil.rmtree(z3.data_dir)
        # Same address and raft id, empty data dir, no --peer: a brand-new cluster.
        n = await z3.start(raft_id=rid)
        await until(lambda: bool(n.state.cluster_id) and n.is_leader, 5.0, message="the new single zero leads")
        assert n.state.cluster_id != old_cid
        # The old leader's stream to that address is refused (another cluster).
        await until(lambda: lead.metrics.peer_refusals.labels(str(rid), "CLUSTER_MISMATCH")._value.get() > 0,
                    5.0, message="old cluster refused by the new zero")
        # And the new zero talking to the old cluster with its old id is refused too.
        other = next(z for z in c.zeros if z.node is not None and z is not z3 and z.node is not n)
        async with grpc.aio.insecure_channel(other.addr) as ch:
            resp = await tgrpc.RaftStub(ch).Send(tpb.RaftBatch(
                protocol=PROTOCOL, cluster_id=n.state.cluster_id, from_id=rid, to_id=other.node.raft_id))  # type: ignore[union-attr]
        assert resp.refusal == tpb.RaftStreamResponse.CLUSTER_MISMATCH
        # Joining the old cluster from that address is refused: zero `rid` holds it.
        spare = tmp_path / "spare"
        with pytest.raises(FailedPreconditionError):
            node = bare_node(NodeOptions(data_dir=str(spare), my_addr=z3.addr, peer=lead.opts.my_addr,
                                         tick_seconds=TICK, join_timeout=5.0), logger=_logger("spare"))
            await node.start()
        # The old cluster is unharmed (two of three voters are a quorum).
        assert lead.is_leader and n.raft_id == rid
        await lead.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(addr="dn:7080", replicas=3)))
    run(body, tmp_path, 3)


@pytest.mark.timeout(30)
def test_removed_id_is_refused_and_told(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()
        victim = next(z for z in c.zeros if z.node is not lead)
        vid = victim.node.raft_id  # type: ignore[union-attr]
        await victim.stop()
        await lead.remove_zero(vid)
        # The removed zero comes back on its data dir (it never saw its removal): peers
        # refuse it as REMOVED and it stops.
        n = await victim.start()
        await until(lambda: n.removed.is_set(), 10.0, message="the removed zero is told")
        assert "removed" in n.removed_reason
        async with grpc.aio.insecure_channel(lead.opts.my_addr) as ch:
            resp = await tgrpc.RaftStub(ch).Send(tpb.RaftBatch(
                protocol=PROTOCOL, cluster_id=lead.state.cluster_id, from_id=vid, to_id=lead.raft_id))
        assert resp.refusal == tpb.RaftStreamResponse.REMOVED
        await c.write(1)
    run(body, tmp_path, 3)


@pytest.mark.timeout(30)
def test_replaced_conf_change_is_detected_and_retried(tmp_path):
    async def body(c: Cluster) -> None:
        await c.start()
        lead = await c.wait_leader()

        def learner(rid: int):  # type: ignore[no-untyped-def]
            return (raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=rid),
                    state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=f"127.0.0.1:{rid}")))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # Raw API, two at once: Raft replaces the second with an empty entry (etcd
        # semantics); it fails fast as dropped instead of timing out or vanishing.
        r = await asyncio.gather(lead.propose_conf_change(*learner(10)), lead.propose_conf_change(*learner(11)),
                                 return_exceptions=True)
        assert not isinstance(r[0], BaseException) and isinstance(r[1], ConfChangeDroppedError), r
        assert loop.time() - t0 < lead.opts.proposal_timeout
        # Through Membership (one at a time, retried): it lands.
        async with lead.membership.changes.lock:
            await lead.membership.changes.conf_change(*learner(11))
        assert {10, 11} <= set(lead.raft_status().learners) and {10, 11} <= set(lead.state._state.zeros)
    run(body, tmp_path, 3)
