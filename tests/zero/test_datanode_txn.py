"""Transactions on the reference data node (zero/datanode/transactions.py, txn.py): a
zero and data nodes in this process on loopback, through real gRPC, the Txn client and
zero's oracle.

Snapshot isolation: a read at start_ts sees exactly the commits below it; of two
overlapping writers one commits; aborted writes are never seen. Garbage collection
below safe_ts keeps every read at or above it right and refuses those below. A move
carries a tablet's versions and settles the writes held on it. A durable node keeps its
versions and its held writes across a restart and resolves them (TxnStatus, the Oracle
stream), and aborts writes whose client went away. The heartbeats carry min_active_ts.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from support.aio import until
from zero.app import ZeroApp
from zero.client import ZeroClient
from zero.datanode.server import DataNode, DataNodeConfig
from zero.datanode.store import TabletStore
from zero.datanode.txn import Txn, TxnClient, conflict_key
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import zero_pb2
from zeroapps import one_zero

pytestmark = pytest.mark.timeout(90)
SC = grpc.StatusCode


class Env:
    def __init__(self, app: ZeroApp, nodes: list[DataNode], zc: ZeroClient, tc: TxnClient) -> None:
        self.app, self.nodes, self.zc, self.tc = app, nodes, zc, tc

    @property
    def zero(self) -> str:
        return f"127.0.0.1:{self.app.grpc_port}"

    def node_cfg(self, group: int, **kw: Any) -> DataNodeConfig:
        kw.setdefault("addr", "127.0.0.1:0")
        return DataNodeConfig(zero=(self.zero,), group=group, heartbeat_interval=0.1, size_interval=0.2,
                              fence_poll=0.05, txn_interval=0.1, chunk_bytes=4096, **kw)

    async def add_node(self, group: int, **kw: Any) -> DataNode:
        d = DataNode(self.node_cfg(group, **kw), log_stream=io.StringIO())
        await d.start()
        await until(lambda: d.txns.ready.is_set(), 10, message="the node on the Oracle stream")
        return d

    async def claim(self, tablet: str, group: int) -> None:
        await self.zc.should_serve(tablet, group)
        await until(lambda: self.zc.group_for(tablet) == group, 10, message=f"{tablet} in the watched map")

    async def write(self, **kv: bytes) -> zero_pb2.CommitResponse:
        """One transaction writing tablet=key value pairs ("t_k": tablet t, key k)."""
        txn = await self.tc.begin()
        for name, v in kv.items():
            t, k = name.split("_")
            txn.put(t, k.encode(), v)
        return await txn.commit()


@asynccontextmanager
async def cluster(tmp_path: Path, groups: int = 2, *, durable: bool = False, **cfg: Any) -> AsyncIterator[Env]:
    cfg.setdefault("rebalance_interval", 0.0)
    app = await one_zero(tmp_path, **cfg)
    nodes: list[DataNode] = []
    zc = ZeroClient(f"127.0.0.1:{app.grpc_port}")
    tc = TxnClient(zc, rpc_timeout=5.0)
    env = Env(app, nodes, zc, tc)
    try:
        for g in range(1, groups + 1):
            nodes.append(await env.add_node(g, data_dir=str(tmp_path / f"dn{g}") if durable else None))
        zc.start_watch()
        await zc.wait_synced()
        await until(lambda: all(zc.view.state is not None and g in zc.view.state.groups
                                for g in range(1, groups + 1)), 10, message="the groups in the watched map")
        yield env
    finally:
        await tc.close()
        await zc.close()
        for d in env.nodes:
            await d.stop()
        await app.stop()


async def _values(txn: Txn, *keys: str) -> list[bytes | None]:
    return await txn.get_many([(k.split("_")[0], k.split("_")[1].encode()) for k in keys])


def test_snapshot_isolation_basics(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            await env.claim("a", 1)
            await env.claim("b", 2)
            first = await env.write(a_x=b"1", b_y=b"1")  # one transaction across two groups
            assert not first.aborted, first
            before = await env.tc.begin()  # sees `first`, not what follows
            second = await env.write(a_x=b"2", b_y=b"2")
            assert not second.aborted and second.commit_ts > before.start_ts
            after = await env.tc.begin()
            assert await _values(before, "a_x", "b_y", "a_none") == [b"1", b"1", None]
            assert await _values(after, "a_x", "b_y") == [b"2", b"2"]
            snap = await env.tc.snapshot()  # read-only at max_assigned: every commit so far
            assert snap.start_ts >= second.commit_ts
            assert await _values(snap, "a_x", "b_y") == [b"2", b"2"]

            # Overlapping writers of one key: the first to commit wins; disjoint ones both commit.
            t1, t2, t3 = await env.tc.begin(), await env.tc.begin(), await env.tc.begin()
            t1.put("a", b"x", b"t1")
            t2.put("a", b"x", b"t2")
            t3.put("b", b"z", b"t3")
            d1, d2, d3 = await t1.commit(), await t2.commit(), await t3.commit()
            assert not d1.aborted and not d3.aborted
            assert d2.aborted and d2.reason == zero_pb2.CONFLICT, d2
            # A transaction reads its own writes; its abort leaves no trace.
            t4 = await env.tc.begin()
            t4.put("a", b"x", b"never")
            assert await t4.get("a", b"x") == b"never"
            assert (await t4.abort()).reason == zero_pb2.CLIENT_ABORT
            # A prewrite the node refused aborts the transaction (b is not group 1's).
            stub = dng.DataNodeStub(grpc.aio.insecure_channel(env.nodes[0].addr))
            t5 = await env.tc.begin()
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await stub.Prewrite(dn.PrewriteRequest(start_ts=t5.start_ts, writes=[
                    dn.TxnMutation(tablet="b", key=b"y", value=b"wrong")]))
            assert ei.value.code() == SC.FAILED_PRECONDITION and "group 2" in (ei.value.details() or "")
            # The aborted writes were dropped by the nodes that held them.
            await until(lambda: not env.nodes[0].txns.pending and not env.nodes[1].txns.pending, 10,
                        message="held writes resolved")
            final = await env.tc.begin()
            assert await _values(final, "a_x", "b_y", "b_z") == [b"t1", b"2", b"t3"]
            # Each read sees exactly the commits below its start_ts: the versions read carry them.
            got = await env.tc.stub(1).TxnGet(dn.TxnGetRequest(read_ts=before.start_ts, keys=[
                dn.TxnKey(tablet="a", key=b"x")]))
            assert got.values[0].commit_ts == first.commit_ts
            # Put and Get (autocommit) see the same versions.
            await stub.Put(dn.PutRequest(tablet="a", key=b"x", value=b"put"))
            assert (await stub.Get(dn.GetRequest(tablet="a", key=b"x"))).value == b"put"
            assert await (await env.tc.begin()).get("a", b"x") == b"put"
            assert await final.get("a", b"x") == b"t1"  # an older snapshot still reads the older version
            # Bad input.
            for req in (dn.TxnGetRequest(read_ts=0, keys=[dn.TxnKey(tablet="a", key=b"x")]),):
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await stub.TxnGet(req)
                assert ei.value.code() == SC.INVALID_ARGUMENT
            for req2 in (dn.PrewriteRequest(start_ts=0, writes=[dn.TxnMutation(tablet="a", key=b"k")]),
                         dn.PrewriteRequest(start_ts=5)):
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await stub.Prewrite(req2)
                assert ei.value.code() == SC.INVALID_ARGUMENT
    asyncio.run(main())


def test_concurrent_increments_lose_nothing(tmp_path) -> None:
    """Read-modify-write increments from many tasks: the aborted ones retry; the final
    count is the number of commits (no lost update)."""
    async def main() -> None:
        async with cluster(tmp_path, groups=1) as env:
            await env.claim("c", 1)
            commits = 0

            async def worker() -> None:
                nonlocal commits
                for _ in range(15):
                    while True:
                        txn = await env.tc.begin()
                        n = int(await txn.get("c", b"n") or b"0")
                        txn.put("c", b"n", str(n + 1).encode())
                        d = await txn.commit()
                        if not d.aborted:
                            commits += 1
                            break
                        assert d.reason == zero_pb2.CONFLICT, d
            await asyncio.gather(*(worker() for _ in range(6)))
            assert await (await env.tc.begin()).get("c", b"n") == str(commits).encode() == b"90"
    asyncio.run(main())


def test_gc_below_safe_ts_keeps_reads_right_and_min_active_ts_holds_it(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=1, durable=True, liveness_window=0.3) as env:
            node = env.nodes[0]
            await env.claim("g", 1)
            decisions = []
            for i in range(30):
                d = await env.write(g_k=b"v%d" % i)
                assert not d.aborted
                decisions.append(d)
            # A reader holds safe_ts at its start_ts while it is active here.
            reader = await env.tc.begin()
            assert await reader.get("g", b"k") == b"v29"
            assert node.txns.min_active_ts() == reader.start_ts
            await until(lambda: env.app.liveness.min_active_ts() == reader.start_ts, 5, message="reported")
            await env.write(g_k=b"later")
            await until(lambda: node.txns.collected_at > decisions[-1].commit_ts, 15, message="GC past the writes")
            assert node.txns.collected_at <= reader.start_ts
            versions = node.store.versions("g")
            assert [v for _, _, v in versions] == [b"v29", b"later"], versions  # the newest below safe_ts stays
            assert await reader.get("g", b"k") == b"v29"
            # Below safe_ts a read is refused; the decision releases the reader.
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await env.tc.stub(1).TxnGet(dn.TxnGetRequest(read_ts=decisions[5].commit_ts, keys=[
                    dn.TxnKey(tablet="g", key=b"k")]))
            assert ei.value.code() == SC.FAILED_PRECONDITION and "safe_ts" in (ei.value.details() or "")
            await reader.commit()
            await until(lambda: node.txns.min_active_ts() == 0, 5, message="the reader released")
            # safe_ts moves on reports only: a newer reader's (SPEC rule 5).
            newer = await env.tc.begin()
            assert await newer.get("g", b"k") == b"later"
            await until(lambda: node.txns.collected_at > reader.start_ts, 15, message="GC past the reader")
            assert node.store.floor >= node.txns.collected_at > 0
            assert TabletStore(node.cfg.data_dir).floor == node.store.floor  # persisted
    asyncio.run(main())


def test_a_move_carries_versions_and_settles_held_writes(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            await env.claim("p", 1)
            old = []
            for i in range(5):
                assert not (await env.write(p_k=b"v%d" % i, p_j=b"j%d" % i)).aborted
                old.append(await env.tc.begin())
            held = await env.tc.begin()  # prewritten at group 1, not committed before the move
            held.put("p", b"k", b"held")
            stub = dng.DataNodeStub(grpc.aio.insecure_channel(env.nodes[0].addr))
            await stub.Prewrite(dn.PrewriteRequest(start_ts=held.start_ts, writes=[
                dn.TxnMutation(tablet="p", key=b"k", value=b"held")]))
            assert env.nodes[0].txns.pending_on("p") == [held.start_ts]
            r = await env.app.moves.move("p", 2)  # type: ignore[union-attr]
            assert r.committed, r
            await until(lambda: env.zc.group_for("p") == 2, 10, message="the move in the watched map")
            # The held write was settled (aborted) before the copy: its commit is refused.
            d = await env.zc.commit(held.start_ts, [conflict_key("p", b"k")], [("p", 1)])
            assert d.aborted and d.reason == zero_pb2.CLIENT_ABORT, d
            # Old snapshots read their versions at the new owner.
            for i, txn in enumerate(old):
                assert await _values(txn, "p_k", "p_j") == [b"v%d" % i, b"j%d" % i]
            assert len(env.nodes[1].store.versions("p")) == 10
            assert not env.nodes[0].store.has("p")
            # Writes go on at the new owner.
            assert not (await env.write(p_k=b"after")).aborted
            assert await (await env.tc.begin()).get("p", b"k") == b"after"
    asyncio.run(main())


def test_restart_keeps_versions_and_resolves_held_writes(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=1, durable=True) as env:
            node = env.nodes[0]
            await env.claim("r", 1)
            assert not (await env.write(r_a=b"1")).aborted
            stub = dng.DataNodeStub(grpc.aio.insecure_channel(node.addr))

            async def prewrite(key: bytes, value: bytes) -> int:
                ts = await env.zc.timestamp()
                await stub.Prewrite(dn.PrewriteRequest(start_ts=ts, writes=[
                    dn.TxnMutation(tablet="r", key=key, value=value)]))
                return ts
            committed_away, aborted_away, later = (await prewrite(b"c", b"c1"), await prewrite(b"x", b"x1"),
                                                   await prewrite(b"l", b"l1"))
            assert env.app.liveness is not None
            await until(lambda: env.app.liveness.min_active_ts() == committed_away, 5, message="min_active_ts")
            addr, data_dir = node.addr, node.cfg.data_dir
            await node.stop()
            env.nodes.remove(node)
            # Decided while the node is down: the stream it left will not tell it.
            c = await env.zc.commit(committed_away, [conflict_key("r", b"c")], [("r", 1)])
            assert not c.aborted
            assert (await env.zc.abort(aborted_away)).aborted
            node = await env.add_node(1, addr=addr, data_dir=data_dir)
            env.nodes.append(node)
            assert sorted(node.txns.pending) == [later]  # resolved with TxnStatus at the restart
            # Decided after the restart: the stream brings it.
            assert not (await env.zc.commit(later, [conflict_key("r", b"l")], [("r", 1)])).aborted
            await until(lambda: not node.txns.pending, 5, message="the stream's commit applied")
            txn = await env.tc.begin()
            assert await _values(txn, "r_a", "r_c", "r_x", "r_l") == [b"1", b"c1", None, b"l1"]
            assert node.store.get_version("r", b"c") == (c.commit_ts, b"c1")
    asyncio.run(main())


def test_writes_whose_client_went_away_are_aborted(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=1) as env:
            node = env.nodes[0]
            node.txns.pending_check, node.txns.pending_timeout = 0.2, 0.5
            await env.claim("w", 1)
            ts = await env.zc.timestamp()
            stub = dng.DataNodeStub(grpc.aio.insecure_channel(node.addr))
            await stub.Prewrite(dn.PrewriteRequest(start_ts=ts, writes=[dn.TxnMutation(tablet="w", key=b"k")]))
            assert node.txns.min_active_ts() == ts
            await until(lambda: not node.txns.pending, 10, message="the held write aborted")
            [d] = await env.zc.txn_status([ts])
            assert d.aborted and d.reason == zero_pb2.CLIENT_ABORT
            assert node.txns.min_active_ts() == 0
            # A prewrite of a decided transaction is refused.
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await stub.Prewrite(dn.PrewriteRequest(start_ts=ts, writes=[dn.TxnMutation(tablet="w", key=b"k")]))
            assert ei.value.code() == SC.FAILED_PRECONDITION and "decided" in (ei.value.details() or "")
    asyncio.run(main())


def test_store_versions_collect_and_rewrite(tmp_path) -> None:
    s = TabletStore(str(tmp_path))
    for ts in (0, 5, 9, 12, 20):
        s.put("t", b"k", b"v%d" % ts, ts)
    s.put("t", b"j", b"only", 3)
    assert [s.get("t", b"k", r) for r in (0, 4, 5, 11, 12, 100)] == [b"v0", b"v0", b"v5", b"v9", b"v12", b"v20"]
    assert s.get("t", b"k") == b"v20" and s.items("t") == [(b"k", b"v20"), (b"j", b"only")]
    assert s.sizes() == {"t": len(b"k" + b"v20") + len(b"j" + b"only")}
    assert s.collect(12) == 3  # v0, v5, v9 are hidden below 12; v12 stays, as does j's only version
    assert [ts for _, ts, _ in s.versions("t")] == [12, 20, 3]
    s.rewrite("t", 12)
    r = TabletStore(str(tmp_path))
    assert sorted(r.versions("t")) == sorted(s.versions("t"))
    # An older release's line (no commit_ts) is a version at 0, visible at every read_ts.
    with open(s._path("u"), "w") as f:
        f.write('{"k": "eA==", "v": "MQ=="}\n')
    assert TabletStore(str(tmp_path)).get("u", b"x", 1) == b"1"
