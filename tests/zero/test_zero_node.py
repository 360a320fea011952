"""ZeroNode + Leases in one process: the Ready loop on the WAL, proposals, reads,
snapshots, and leases that never repeat across restarts."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from raftcore import raftpb
from support.aio import until
from zero.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from zero.leader.leases import Leases
from zero.replica.duties import ensure_cluster_identity
from zero.replica.node import NodeOptions, ZeroNode
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import state_pb2, zero_pb2
from zero.state.versions import ZERO_VERSION

from zeroapps import bare_node


def _logger():
    return structlog.wrap_logger(logging.getLogger("test"))


async def _started(tmp_path, **kw) -> ZeroNode:
    opts = NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01, **kw)
    node = bare_node(opts, logger=_logger())
    await node.start()
    await until(lambda: node.is_leader, 10)
    await ensure_cluster_identity(node)
    return node


@pytest.mark.timeout(30)
def test_single_zero_leases_and_restart(tmp_path):
    async def main() -> None:
        node = await _started(tmp_path)
        leases = Leases(node)
        node.on_leadership.append(leases.leadership_changed)
        cid = node.state.cluster_id
        assert cid and node.raft_id == 1 and 1 in node.state.state_copy().zeros
        seen = []
        for _ in range(50):
            r = await leases.assign(zero_pb2.UID, 7)
            assert r.end_id - r.start_id + 1 == 7
            seen.append((r.start_id, r.end_id))
        ts = []
        for _ in range(50):
            r = await leases.assign(zero_pb2.TIMESTAMP, 1)
            ts.append(r.start_id)
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        with pytest.raises(InvalidArgumentError):
            await leases.assign(zero_pb2.UID, 0)
        with pytest.raises(InvalidArgumentError):
            await leases.assign(zero_pb2.UID, 1_000_001)
        await node.stop()

        node2 = await _started(tmp_path)
        assert node2.state.cluster_id == cid
        leases2 = Leases(node2)
        node2.on_leadership.append(leases2.leadership_changed)
        r = await leases2.assign(zero_pb2.UID, 1)
        assert r.start_id > max(e for _, e in seen)
        t = await leases2.assign(zero_pb2.TIMESTAMP, 1)
        assert t.start_id > ts[-1]
        await node2.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_snapshot_and_recovery_from_snapshot(tmp_path):
    async def main() -> None:
        node = await _started(tmp_path, snapshot_every=50)
        for i in range(120):
            await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=3)))
        await node.read_barrier()
        assert node.snapshot_index >= 100
        before = node.state.snapshot()
        await node.stop()
        node2 = await _started(tmp_path)
        await node2.read_barrier()
        assert len(node2.state.state_copy().groups) == 40
        assert node2.state.snapshot() == before
        await node2.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_concurrent_reads_share_rounds(tmp_path):
    async def main() -> None:
        node = await _started(tmp_path)
        await asyncio.gather(*(node.read_barrier() for _ in range(200)))
        rounds = node.read_rounds.rounds_started
        assert rounds < 50, rounds
        await node.stop()

    asyncio.run(main())


def _join_request(addr: str) -> tpb.JoinClusterRequest:
    return tpb.JoinClusterRequest(addr=addr, protocol=tpb.RAFT_PROTOCOL_V1, version=ZERO_VERSION)


@pytest.mark.timeout(60)
def test_join_before_the_first_leader_registered_itself(tmp_path):
    """bench/replication_bench.py --processes crashed zero 1's Ready loop with
    ConfChangeError("removed all voters"): the joiners dial it before it leads, and a
    JoinCluster that got in after its cluster id was applied but before its own AddZero
    (ensure_cluster_identity proposes them one after the other) was handed raft id 1 —
    next_raft_id starts at 1 and zero 1 was not in state.zeros yet — so the leader
    proposed AddLearner(1), which demotes the only voter when applied. The committed
    entry would crash every restart of zero 1 too. Here the window is held open by
    proposing the cluster id alone."""

    async def main() -> None:
        opts = NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01)
        node = bare_node(opts, logger=_logger())
        await node.start()
        try:
            await until(lambda: node.is_leader, 10)
            await node.propose(state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id="c-1")))
            assert node.state.cluster_id == "c-1" and 1 not in node.state._state.zeros
            with pytest.raises(UnavailableError, match="not registered"):
                await node.handle_join(_join_request("localhost:5081"))
            for _ in range(20):  # let the Ready loop apply whatever the join proposed
                await asyncio.sleep(0.01)
            assert node.fatal is None, f"the Ready loop crashed: {node.fatal!r}"
            st = node.raft_status()
            assert st.voters == (1,) and st.learners == ()
            assert node.state._state.zeros == {}

            # Once the leader is a member, the joiner gets the next free id, and the
            # answer names the leader (the joiner's only way to reach it at first).
            await ensure_cluster_identity(node)
            resp = await node.handle_join(_join_request("localhost:5081"))
            assert resp.raft_id == 2
            assert [(m.id, m.leader) for m in resp.peers] == [(1, True), (2, False)]
            st = node.raft_status()
            assert st.voters == (1,) and st.learners == (2,)
            assert node.fatal is None
        finally:
            await node.stop()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_conf_change_that_cannot_apply_is_never_proposed(tmp_path):
    """The guards behind the join fix: an assigned raft id skips every id of the Raft
    configuration, and a membership change Raft would refuse to apply (or that would
    demote a voter) is refused before it is proposed, so it never reaches the log."""

    async def main() -> None:
        node = await _started(tmp_path)
        try:
            last = node.raft_status().commit
            # A demotion of the only voter ("removed all voters" when applied).
            with pytest.raises(FailedPreconditionError, match="demote voter 1"):
                await node.membership.changes.conf_change(
                    raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=1),
                    state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=1, addr="localhost:5080")))
            # Removing the only voter.
            with pytest.raises(FailedPreconditionError, match="removed all voters"):
                await node.membership.changes.conf_change(
                    raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=1),
                    state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=1, addr="localhost:5080")))
            assert node.last_index == last
            # A member of the Raft configuration the state does not list: a learner
            # whose AddZero was refused at apply (Raft applies its part regardless).
            # next_raft_id names it; the joiner must get a free id instead.
            with pytest.raises(FailedPreconditionError):
                await node.propose_conf_change(
                    raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=2),
                    state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=2, addr="localhost:5080")))
            assert node.raft_status().learners == (2,) and 2 not in node.state._state.zeros
            assert node.state.next_raft_id == 2
            resp = await node.handle_join(_join_request("localhost:5081"))
            assert resp.raft_id == 3
            st = node.raft_status()
            assert st.voters == (1,) and st.learners == (2, 3)
            assert node.fatal is None
        finally:
            await node.stop()

    asyncio.run(main())
