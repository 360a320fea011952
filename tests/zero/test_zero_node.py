"""ZeroNode + Leases in one process: the Ready loop on the WAL, proposals, reads,
snapshots, and leases that never repeat across restarts."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from zero.errors import InvalidArgumentError
from zero.leases import Leases
from zero.node import NodeOptions, ZeroNode
from zero.pb import state_pb2, zero_pb2


def _logger():
    return structlog.wrap_logger(logging.getLogger("test"))


async def _until(pred, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


async def _started(tmp_path, **kw) -> ZeroNode:
    opts = NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01, **kw)
    node = ZeroNode(opts, logger=_logger())
    await node.start()
    await _until(lambda: node.is_leader)
    await node.ensure_cluster_identity()
    return node


@pytest.mark.timeout(30)
def test_single_zero_leases_and_restart(tmp_path):
    async def main() -> None:
        node = await _started(tmp_path)
        leases = Leases(node)
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
        assert node._snapshot_index >= 100
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
        rounds = node._read_seq
        assert rounds < 50, rounds
        await node.stop()

    asyncio.run(main())
