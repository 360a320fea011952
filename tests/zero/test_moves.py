"""Tablet moves: the planner (pure), the back-off, and the move driver against reference
data nodes, all in one process on loopback (a ZeroApp and DataNodes on free ports).

Rollback paths: the source fails, the copy times out, a move left by an earlier leader;
the data node's move-id fencing; the reference node's data dir."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import grpc
import pytest

from support.aio import until
from zero.app import ZeroApp
from zero.config import RunConfig
from zero.datanode.server import DataNode, DataNodeConfig
from zero.datanode.store import TabletStore
from zero.leader.backoff import Backoff
from zero.leader.planner import MovePlan, group_sizes, plan_rebalance
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import state_pb2, zero_pb2, zero_pb2_grpc

SC = grpc.StatusCode


# -- the planner ------------------------------------------------------------------------------------
def _state(groups: dict[int, dict[str, int]], *, read_only: set[str] = frozenset(),  # type: ignore[assignment]
           no_members: set[int] = frozenset()) -> zero_pb2.MembershipState:  # type: ignore[assignment]
    st = zero_pb2.MembershipState()
    for gid, tablets in groups.items():
        g = st.groups[gid]
        if gid not in no_members:
            g.members[gid].CopyFrom(zero_pb2.Member(id=gid, group_id=gid, addr=f"dn{gid}:1"))
        for name, size in tablets.items():
            g.tablets[name].CopyFrom(zero_pb2.Tablet(predicate=name, group_id=gid, size_bytes=size,
                                                     read_only=name in read_only))
    return st


def test_planner_moves_the_largest_tablet_at_most_half_the_difference() -> None:
    st = _state({1: {"a": 50, "b": 30, "c": 20}, 2: {"d": 10}, 3: {"e": 40}})
    assert group_sizes(st) == {1: 100, 2: 10, 3: 40}
    # diff 90, half 45: "a" (50) is too big, "b" (30) is the largest that fits.
    assert plan_rebalance(st) == MovePlan("b", 1, 2, 30)
    assert plan_rebalance(st, skip=lambda n: n == "b") == MovePlan("c", 1, 2, 20)
    assert plan_rebalance(st, skip=lambda n: n in ("b", "c")) is None
    # Only the groups given take part.
    assert plan_rebalance(st, groups={1, 3}) == MovePlan("b", 1, 3, 30)  # diff 60, half 30


def test_planner_leaves_balanced_or_unmovable_groups_alone() -> None:
    assert plan_rebalance(_state({1: {"a": 100}, 2: {"b": 91}})) is None  # within 10 %
    assert plan_rebalance(_state({1: {"a": 100}})) is None  # one group
    assert plan_rebalance(_state({1: {"a": 100}, 2: {}})) is None  # the only tablet is too big
    assert plan_rebalance(_state({1: {"a": 10, "b": 90}, 2: {}})) == MovePlan("a", 1, 2, 10)
    assert plan_rebalance(_state({1: {"a": 10, "b": 90}, 2: {}}, read_only={"a"})) is None
    assert plan_rebalance(_state({1: {"a": 0, "b": 90}, 2: {}})) is None  # empty tablets don't help
    # A group without voting members cannot take a tablet.
    assert plan_rebalance(_state({1: {"a": 10, "b": 90}, 2: {}}, no_members={2})) is None


def test_planner_is_deterministic_on_ties() -> None:
    st = _state({1: {"x": 10, "w": 10, "big": 100}, 2: {}, 3: {}})
    assert plan_rebalance(st) == MovePlan("w", 1, 2, 10)  # lower group id, then tablet name
    assert all(plan_rebalance(st) == MovePlan("w", 1, 2, 10) for _ in range(5))


def test_backoff_doubles_up_to_the_cap() -> None:
    now = [0.0]
    b = Backoff(3600, 86400, clock=lambda: now[0])
    assert [b.failed("t") for _ in range(7)] == [3600, 7200, 14400, 28800, 57600, 86400, 86400]
    assert b.blocked("t") and not b.blocked("u")
    now[0] = 86401
    assert not b.blocked("t")
    b.failed("t")
    b.succeeded("t")
    assert not b.blocked("t") and b.failed("t") == 3600


# -- an in-process cluster --------------------------------------------------------------------------
class Env:
    def __init__(self, app: ZeroApp, nodes: list[DataNode]) -> None:
        self.app = app
        self.nodes = nodes
        self.channels = [grpc.aio.insecure_channel(n.addr) for n in nodes]
        self.dn = [dng.DataNodeStub(c) for c in self.channels]
        self.zch = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
        self.admin = zero_pb2_grpc.ZeroAdminStub(self.zch)

    @property
    def state(self) -> Any:
        assert self.app.node is not None
        return self.app.node.state

    def tablet(self, name: str) -> zero_pb2.Tablet | None:
        return self.state.tablet(name)

    async def fill(self, i: int, tablet: str, n: int, size: int = 100) -> None:
        for k in range(n):
            await self.dn[i].Put(dn.PutRequest(tablet=tablet, key=b"k%d" % k, value=bytes([k % 251]) * size))

    async def code(self, call: Awaitable[Any]) -> tuple[Any, str]:
        try:
            await call
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details() or ""
        return SC.OK, ""

    async def close(self) -> None:
        for c in (*self.channels, self.zch):
            await c.close()


@asynccontextmanager
async def cluster(tmp_path: Any, groups: int = 2, *, chunk_delay: float = 0.0,
                  **cfg: Any) -> AsyncIterator[Env]:
    cfg.setdefault("rebalance_interval", 0.0)
    app = ZeroApp(RunConfig(data_dir=str(tmp_path / "zw"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            tick=0.01, log_format="json", **cfg), log_stream=io.StringIO())
    await app.start()
    nodes: list[DataNode] = []
    env: Env | None = None
    try:
        node = app.node
        assert node is not None
        await until(lambda: node.is_leader and node.state.cluster_id, 10, message="a leader")
        for g in range(1, groups + 1):
            d = DataNode(DataNodeConfig(zero=(f"127.0.0.1:{app.grpc_port}",), addr="127.0.0.1:0", group=g,
                                        size_interval=0.1, heartbeat_interval=0.1, fence_poll=0.05,
                                        chunk_bytes=4096, chunk_delay=chunk_delay), log_stream=io.StringIO())
            await d.start()
            nodes.append(d)
        assert app.liveness is not None
        await until(lambda: all(app.liveness._seen.get(d.member_id) for d in nodes), 10, message="heartbeats")
        env = Env(app, nodes)
        yield env
    finally:
        if env is not None:
            await env.close()
        for d in nodes:
            await d.stop()
        await app.stop()


def _metric(env: Env, name: str) -> float:
    assert env.app.node is not None
    v = env.app.node.metrics.registry.get_sample_value(name)
    return v or 0.0


@pytest.mark.timeout(30)
def test_move_commits_copies_every_key_and_the_source_refuses_writes(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            await env.fill(0, "p", 300)
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2))
            assert r.committed and r.tablet.group_id == 2 and not r.tablet.read_only, r
            for k in range(300):
                got = await env.dn[1].Get(dn.GetRequest(tablet="p", key=b"k%d" % k))
                assert got.found and got.value == bytes([k % 251]) * 100
            code, msg = await env.code(env.dn[0].Put(dn.PutRequest(tablet="p", key=b"x", value=b"y")))
            assert code == SC.FAILED_PRECONDITION and "group 2" in msg
            await until(lambda: env.dn[1].Put(dn.PutRequest(tablet="p", key=b"x", value=b"y")) and True, 10,
                        message="writes at the new owner")
            assert not env.nodes[0].store.has("p"), "the source keeps its copy after the commit"
            assert _metric(env, "zero_tablet_moves_succeeded_total") == 1
            assert _metric(env, "zero_tablet_move_bytes_total") > 300 * 100
            # Errors: unknown group and tablet, same group, bad input.
            for req, code_ in ((zero_pb2.MoveTabletRequest(predicate="p", dst_group=7), SC.NOT_FOUND),
                               (zero_pb2.MoveTabletRequest(predicate="nope", dst_group=1), SC.NOT_FOUND),
                               (zero_pb2.MoveTabletRequest(predicate="p", dst_group=2), SC.FAILED_PRECONDITION),
                               (zero_pb2.MoveTabletRequest(predicate="", dst_group=2), SC.INVALID_ARGUMENT)):
                assert (await env.code(env.admin.MoveTablet(req)))[0] == code_, req
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_second_concurrent_move_is_refused(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=3, chunk_delay=0.05) as env:
            await env.fill(0, "p", 200)
            await env.fill(0, "q", 10)
            first = asyncio.ensure_future(env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2)))
            await until(lambda: env.state.active_move() is not None, 10, message="the first move")
            code, msg = await env.code(env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="q", dst_group=3)))
            assert code == SC.FAILED_PRECONDITION and "in progress" in msg
            now = await env.admin.SetRebalance(zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.NOW))
            assert list(now.started_moves) == []
            assert (await first).committed
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_source_failure_rolls_back_and_backs_the_tablet_off(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=2, chunk_delay=0.05) as env:
            await env.fill(0, "p", 200)
            move = asyncio.ensure_future(env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2)))
            await until(lambda: env.nodes[1].store.move_ids("p").newest, 10, message="the copy under way")
            await env.nodes[0]._server.stop(0)  # type: ignore[union-attr]  # the source dies mid-copy
            r = await move
            assert not r.committed and "rolled back" in r.message
            t = env.tablet("p")
            assert t is not None and t.group_id == 1 and not t.read_only
            assert env.state.active_move() is None
            assert env.state.moves()[-1].phase == state_pb2.MOVE_ABORTED
            assert not env.nodes[1].store.has("p"), "the destination kept a partial copy"
            assert env.app.moves is not None and env.app.moves.backoff.blocked("p")
            assert _metric(env, "zero_tablet_moves_failed_total") == 1
            assert _metric(env, "zero_tablet_moves_rolled_back_total") == 1
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_copy_timeout_rolls_back_and_the_source_serves_writes_again(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=2, chunk_delay=0.1, move_timeout=0.5) as env:
            await env.fill(0, "p", 400)  # 10 chunks, 1 s
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2))
            assert not r.committed and "DEADLINE_EXCEEDED" in r.message, r
            assert not env.tablet("p").read_only  # type: ignore[union-attr]
            # The destination dropped what it had; late chunks of the move are refused.
            assert not env.nodes[1].store.has("p")
            assert env.nodes[1].store.move_ids("p").dropped == r.move_id
            # The source's fence is lifted once zero's state shows the move over.
            await until(lambda: not env.nodes[0].moves.fences, 10, message="the fence lifted")
            await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"after", value=b"1"))
            # A stale move id is refused by the data nodes.
            stale = dn.MoveTabletCommand(move_id=r.move_id - 1 or 1, predicate="p", src_group=1, dst_group=2,
                                         dst_addrs=[env.nodes[1].addr], move_ts=1)
            code, msg = await env.code(env.dn[0].MoveTablet(stale))
            assert code == SC.FAILED_PRECONDITION and "dropped" in msg or "stale" in msg, msg
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_new_leader_rolls_back_a_move_it_did_not_start(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=2) as env:
            await env.fill(0, "p", 20)
            node = env.app.node
            assert node is not None and env.app.leases is not None
            # A move as an earlier leader would have left it: started, never finished.
            ts = await env.app.leases.assign(zero_pb2.TIMESTAMP, 1)
            started = await node.propose(state_pb2.Proposal(start_move=state_pb2.StartMove(
                predicate="p", dst_group=2, move_ts=ts.start_id)))
            assert env.tablet("p").read_only and started.move is not None  # type: ignore[union-attr]
            await until(lambda: env.state.active_move() is None, 10, message="the rollback")
            # The destination was told to drop whatever it had of that move.
            await until(lambda: env.nodes[1].store.move_ids("p").dropped == started.move.move_id, 10,  # type: ignore
                        message="the drop at the destination")
            t = env.tablet("p")
            assert t is not None and t.group_id == 1 and not t.read_only
            assert env.state.moves()[-1].phase == state_pb2.MOVE_ABORTED
            await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"k", value=b"v"))
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_writes_racing_a_move_are_refused_or_moved(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=2, chunk_delay=0.02) as env:
            await env.fill(0, "p", 100)
            acked: dict[bytes, bytes] = {}
            refused = 0
            stop = asyncio.Event()

            async def writer(w: int) -> None:
                nonlocal refused
                i = 0
                while not stop.is_set():
                    key, val = b"w%d-%d" % (w, i), b"v%d" % i
                    code, _ = await env.code(env.dn[0].Put(dn.PutRequest(tablet="p", key=key, value=val)))
                    if code == SC.OK:
                        acked[key] = val
                    else:
                        assert code == SC.FAILED_PRECONDITION
                        refused += 1
                    i += 1
            writers = [asyncio.ensure_future(writer(w)) for w in range(4)]
            await asyncio.sleep(0.1)
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2))
            await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*writers)
            assert r.committed and refused > 0 and len(acked) > 0
            for key, val in acked.items():
                got = await env.dn[1].Get(dn.GetRequest(tablet="p", key=key))
                assert got.found and got.value == val, key
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_rebalancer_evens_out_a_skewed_load(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, groups=3, rebalance_interval=0.2) as env:
            off = zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.OFF)
            assert not (await env.admin.SetRebalance(off)).enabled
            for name, n in (("a", 40), ("b", 30), ("c", 20), ("d", 10)):
                await env.fill(0, name, n, size=1000)
            await until(lambda: group_sizes(env.state.state_copy()).get(1, 0) > 95_000, 10, message="sizes reported")
            on = zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.ON)
            assert (await env.admin.SetRebalance(on)).enabled

            def settled() -> bool:
                st = env.state.state_copy()
                return (env.state.active_move() is None and
                        plan_rebalance(st) is None and len([g for g, s in group_sizes(st).items() if s]) == 3)
            await until(settled, timeout=15, message="a balanced load")
            sizes = group_sizes(env.state.state_copy())
            assert max(sizes.values()) <= 50_000, sizes
            for name, n in (("a", 40), ("b", 30), ("c", 20), ("d", 10)):
                gid = env.state.group_of(name)
                got = await env.dn[gid - 1].Get(dn.GetRequest(tablet=name, key=b"k%d" % (n - 1)))
                assert got.found, name
    asyncio.run(main())


def test_store_data_dir_survives_restart_and_a_torn_write(tmp_path) -> None:
    s = TabletStore(str(tmp_path))
    s.put("t/ä", b"k1", b"v1")
    s.put("t/ä", b"k1", b"v2")
    s.install("u", [(b"a", b"1"), (b"b", b"2")])
    s.move_ids("u").newest = 7
    s.save_move_ids()
    path = s._path("t/ä")
    with open(path, "a") as f:
        f.write('{"k": "eA==", "v"')  # a crash mid-append
    r = TabletStore(str(tmp_path))
    assert r.get("t/ä", b"k1") == b"v2" and r.items("u") == [(b"a", b"1"), (b"b", b"2")]
    assert r.sizes() == {"t/ä": 4, "u": 4} and r.move_ids("u").newest == 7
    r.put("t/ä", b"k2", b"v3")  # the torn tail was cut: this lands on a line of its own
    assert TabletStore(str(tmp_path)).get("t/ä", b"k2") == b"v3"
    assert r.drop("u") and not TabletStore(str(tmp_path)).has("u")
