"""zero's gRPC and HTTP surface in one process: a ZeroApp on free loopback ports, driven
through real grpc.aio and HTTP clients. Every RPC, the SPEC error table (bad input
changes nothing), the admin token, health, reflection, and `zero run`'s flag parsing."""

from __future__ import annotations

import asyncio
import io
import json
import types
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from support.aio import until
from zero.ops import backup
from zero import cli
from zero.app import ZeroApp
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.frontdoor.auth import check_admin
from zero.frontdoor.forwarding import NodeSlot
from zero.frontdoor.interceptor import Interceptor, Route
from zero.errors import PermissionDeniedError, UnauthenticatedError

from zeroapps import one_zero

TOKEN = "s3cret-token"
SC = grpc.StatusCode


class Env:
    def __init__(self, app: ZeroApp, channel: grpc.aio.Channel, logs: io.StringIO) -> None:
        self.app = app
        self.channel = channel
        self.logs = logs
        self.zero = zero_pb2_grpc.ZeroStub(channel)
        self.admin = zero_pb2_grpc.ZeroAdminStub(channel)
        self.http = f"http://127.0.0.1:{app.http_port}"

    def version(self) -> int:
        assert self.app.node is not None
        return self.app.node.state.version

    def snapshot(self) -> bytes:
        assert self.app.node is not None
        return self.app.node.state.snapshot()

    async def fails(self, code: grpc.StatusCode, call: Awaitable[object]) -> str:
        """The call fails with `code` and changes nothing; returns the message."""
        before = self.snapshot()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await call
        assert ei.value.code() == code, (ei.value.code(), ei.value.details())
        assert self.snapshot() == before, "a refused request changed the state"
        return ei.value.details() or ""


async def _first(stream):
    return await stream.read()


def run_env(tmp_path, body: Callable[[Env], Awaitable[None]], **cfg: object) -> None:
    async def main() -> None:
        logs = io.StringIO()
        app = await one_zero(tmp_path, logs=logs, **cfg)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
                await body(Env(app, ch, logs))
        finally:
            await app.stop()

    asyncio.run(main())


ADMIN_MD = (("authorization", f"Bearer {TOKEN}"),)


@pytest.mark.timeout(30)
def test_leases_state_and_bad_counts(tmp_path) -> None:
    async def body(env: Env) -> None:
        z = env.zero
        uids = [await z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=5)) for _ in range(20)]
        for r in uids:
            assert r.end_id - r.start_id + 1 == 5
        ranges = sorted((r.start_id, r.end_id) for r in uids)
        assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
        ts = []
        for i in range(20):
            r = await (z.Timestamps(zero_pb2.TimestampsRequest(count=1)) if i % 2 else
                       z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.TIMESTAMP, count=1)))
            ts.append(r.start_id)
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        state = await z.GetState(zero_pb2.GetStateRequest())
        assert state.max_uid >= ranges[-1][1] and state.max_txn_ts >= ts[-1]
        assert state.cluster_id and state.zeros[1].leader and state.zeros[1].healthy

        for count in (0, 1_000_001, 1 << 63):
            msg = await env.fails(SC.INVALID_ARGUMENT, z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID,
                                                                                             count=count)))
            assert "1,000,000" in msg
            await env.fails(SC.INVALID_ARGUMENT, z.Timestamps(zero_pb2.TimestampsRequest(count=count)))
        await env.fails(SC.INVALID_ARGUMENT, z.AssignIds(zero_pb2.AssignIdsRequest(kind=7, count=1)))
        big = await z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1_000_000))
        assert big.end_id - big.start_id + 1 == 1_000_000 and big.start_id > ranges[-1][1]

        metrics = env.app.node.metrics.render().decode()  # type: ignore[union-attr]
        assert 'zero_grpc_requests_total{code="INVALID_ARGUMENT",method="zero.v1.Zero/AssignIds"}' in metrics
        assert 'zero_grpc_requests_total{code="OK",method="zero.v1.Zero/Timestamps"} 10.0' in metrics
        assert 'zero_grpc_request_seconds_count{method="zero.v1.Zero/GetState"} 1.0' in metrics

    run_env(tmp_path, body)


@pytest.mark.timeout(30)
def test_members_tablets_and_bad_input(tmp_path) -> None:
    async def body(env: Env) -> None:
        z = env.zero
        c1 = await z.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"))
        assert c1.member.id >= 1 and c1.member.group_id == 1 and c1.member.healthy
        assert c1.state.groups[1].members[c1.member.id].addr == "dn1:7080"
        again = await z.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"))
        assert again.member.id == c1.member.id  # idempotent by address
        c2 = await z.Connect(zero_pb2.ConnectRequest(addr="dn2:7080"))
        assert c2.member.group_id == 2  # --replicas 1: one member per group
        await env.fails(SC.FAILED_PRECONDITION, z.Connect(zero_pb2.ConnectRequest(id=c2.member.id, addr="dn1:7080")))
        await env.fails(SC.NOT_FOUND, z.Connect(zero_pb2.ConnectRequest(id=999, addr="dn9:7080")))
        for bad in ("", "nohost", "dn:0", "dn:99999", "a b:1"):
            await env.fails(SC.INVALID_ARGUMENT, z.Connect(zero_pb2.ConnectRequest(addr=bad)))
        await env.fails(SC.INVALID_ARGUMENT, z.Connect(zero_pb2.ConnectRequest(addr="dn3:1", learner=True)))

        hb = await z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=c1.member.id, group_id=1, leader=True))
        assert hb.version == env.version()
        await env.fails(SC.NOT_FOUND, z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=999)))
        await env.fails(SC.INVALID_ARGUMENT, z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=0)))
        await env.fails(SC.FAILED_PRECONDITION, z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=c1.member.id,
                                                                                     group_id=2)))
        st = await z.GetState(zero_pb2.GetStateRequest())
        m1 = st.groups[1].members[c1.member.id]
        assert m1.healthy and m1.leader and m1.last_heartbeat_ms > 0
        assert not st.groups[2].members[c2.member.id].leader

        # ShouldServe: group 0 only looks up; a non-zero group claims; the owner wins.
        v = env.version()
        t = await z.ShouldServe(zero_pb2.Tablet(predicate="name"))
        assert t.group_id == 0 and env.version() == v
        t = await z.ShouldServe(zero_pb2.Tablet(predicate="name", group_id=1))
        assert t.group_id == 1 and t.predicate == "name"
        t = await z.ShouldServe(zero_pb2.Tablet(predicate="name", group_id=2))
        assert t.group_id == 1
        t = await z.ShouldServe(zero_pb2.Tablet(predicate="name"))
        assert t.group_id == 1
        await env.fails(SC.NOT_FOUND, z.ShouldServe(zero_pb2.Tablet(predicate="other", group_id=7)))
        await env.fails(SC.INVALID_ARGUMENT, z.ShouldServe(zero_pb2.Tablet(predicate="", group_id=1)))
        await env.fails(SC.INVALID_ARGUMENT, z.ShouldServe(zero_pb2.Tablet(predicate="x" * 1025, group_id=1)))

        resp = await z.Tablets(zero_pb2.TabletsRequest(tablets=[
            zero_pb2.Tablet(predicate="b", group_id=2), zero_pb2.Tablet(predicate="name", group_id=2),
            zero_pb2.Tablet(predicate="c"), zero_pb2.Tablet(predicate="a", group_id=1)]))
        assert [(t.predicate, t.group_id) for t in resp.tablets] == [("b", 2), ("name", 1), ("c", 0), ("a", 1)]
        await env.fails(SC.NOT_FOUND, z.Tablets(zero_pb2.TabletsRequest(tablets=[
            zero_pb2.Tablet(predicate="d", group_id=1), zero_pb2.Tablet(predicate="e", group_id=9)])))
        await env.fails(SC.INVALID_ARGUMENT, z.Tablets(zero_pb2.TabletsRequest(tablets=[
            zero_pb2.Tablet(predicate="d", group_id=1), zero_pb2.Tablet(predicate="")])))

        # UpdateTabletSizes: only a new size or a change above 10% is proposed.
        await z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=1, sizes={"name": 1000, "b": 5}))
        v = env.version()
        st = await z.GetState(zero_pb2.GetStateRequest())
        assert st.groups[1].tablets["name"].size_bytes == 1000
        await z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=1, sizes={"name": 1090}))
        assert env.version() == v
        await z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=1, sizes={"name": 1200}))
        assert env.version() > v
        await env.fails(SC.INVALID_ARGUMENT, z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=0, sizes={"a": 1})))
        await env.fails(SC.NOT_FOUND, z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=9, sizes={"a": 1})))
        await env.fails(SC.INVALID_ARGUMENT, z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=1, sizes={"a": -1})))
        await env.fails(SC.INVALID_ARGUMENT, z.UpdateTabletSizes(zero_pb2.TabletSizes(group_id=1, sizes={"": 1})))

        # StreamMembership: the full state first (one chunk here), then deltas.
        stream = z.StreamMembership(zero_pb2.StreamMembershipRequest())
        first = await asyncio.wait_for(stream.read(), 10)
        assert first.full and first.last_chunk and first.version == env.version()
        assert "name" in first.state.groups[1].tablets
        await z.ShouldServe(zero_pb2.Tablet(predicate="streamed", group_id=1))
        delta = await asyncio.wait_for(stream.read(), 10)
        assert not delta.full and "streamed" in delta.state.groups[1].tablets
        stream.cancel()
        await env.fails(SC.INVALID_ARGUMENT, _first(z.StreamMembership(
            zero_pb2.StreamMembershipRequest(since_version=1, cluster_id="x" * 1000))))

    run_env(tmp_path, body)


@pytest.mark.timeout(30)
def test_admin_token_and_admin_rpcs(tmp_path) -> None:
    async def body(env: Env) -> None:
        a, z = env.admin, env.zero
        await env.fails(SC.UNAUTHENTICATED, a.RaftStatus(zero_pb2.RaftStatusRequest()))
        await env.fails(SC.PERMISSION_DENIED, a.RaftStatus(zero_pb2.RaftStatusRequest(),
                                                           metadata=(("authorization", "Bearer wrong"),)))
        await env.fails(SC.UNAUTHENTICATED, a.RaftStatus(zero_pb2.RaftStatusRequest(),
                                                         metadata=(("authorization", TOKEN),)))
        st = await a.RaftStatus(zero_pb2.RaftStatusRequest(), metadata=ADMIN_MD)
        assert st.role == "LEADER" and st.id == 1 and st.lead == 1 and st.applied >= 1 and st.cluster_id
        assert st.leader_addr == f"localhost:{env.app.grpc_port}" and st.progress[1].match >= 1

        snap = await a.Snapshot(zero_pb2.SnapshotRequest(), metadata=ADMIN_MD)
        assert snap.index == env.app.node.applied and snap.term >= 1 and snap.size_bytes > 0  # type: ignore[union-attr]

        m = (await z.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"))).member
        await z.Connect(zero_pb2.ConnectRequest(addr="dn2:7080"))
        await z.ShouldServe(zero_pb2.Tablet(predicate="p", group_id=1))
        # force is a move without a copy: admin only.
        await env.fails(SC.UNAUTHENTICATED, z.ShouldServe(zero_pb2.Tablet(predicate="p", group_id=2, force=True)))
        await env.fails(SC.INVALID_ARGUMENT, z.ShouldServe(zero_pb2.Tablet(predicate="p", force=True),
                                                           metadata=ADMIN_MD))
        t = await z.ShouldServe(zero_pb2.Tablet(predicate="p", group_id=2, force=True), metadata=ADMIN_MD)
        assert t.group_id == 2

        await env.fails(SC.UNAUTHENTICATED, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=m.id, group_id=1)))
        # Zeros are group 0: the last zero is never removed; an unknown one is NOT_FOUND.
        await env.fails(SC.FAILED_PRECONDITION, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=1, group_id=0),
                                                             metadata=ADMIN_MD))
        await env.fails(SC.NOT_FOUND, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=7, group_id=0),
                                                   metadata=ADMIN_MD))
        await env.fails(SC.NOT_FOUND, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=99, group_id=1),
                                                   metadata=ADMIN_MD))
        await env.fails(SC.NOT_FOUND, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=m.id, group_id=5),
                                                   metadata=ADMIN_MD))
        r = await a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=m.id, group_id=1), metadata=ADMIN_MD)
        assert r.removed.id == m.id and r.version == env.version()
        await env.fails(SC.FAILED_PRECONDITION, a.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=m.id, group_id=1),
                                                             metadata=ADMIN_MD))
        await env.fails(SC.FAILED_PRECONDITION, z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=m.id)))
        await env.fails(SC.FAILED_PRECONDITION, z.Connect(zero_pb2.ConnectRequest(id=m.id, addr="dn1:7080")))
        st = await z.GetState(zero_pb2.GetStateRequest())
        assert [x.id for x in st.removed] == [m.id]

        # Moves (tests/zero/test_moves.py has the rest): a destination without voters is
        # refused at once; one whose members are not live is "retry" within a liveness
        # window of becoming leader (the data nodes may not have been heard yet), and a
        # refusal after it.
        await env.fails(SC.FAILED_PRECONDITION, a.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=1),
                                                             metadata=ADMIN_MD))
        dn9 = (await z.Connect(zero_pb2.ConnectRequest(addr="dn9:7080", group_id=1))).member
        env.app.liveness.forget(dn9.id)  # connected, never heard from since
        await env.fails(SC.UNAVAILABLE, a.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=1),
                                                     metadata=ADMIN_MD))
        env.app.liveness._since -= env.app.liveness.window  # a full window has passed
        await env.fails(SC.FAILED_PRECONDITION, a.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=1),
                                                             metadata=ADMIN_MD))
        await env.fails(SC.INVALID_ARGUMENT, a.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p"), metadata=ADMIN_MD))
        await env.fails(SC.INVALID_ARGUMENT, a.SetRebalance(zero_pb2.SetRebalanceRequest(), metadata=ADMIN_MD))
        # A single zero has no voter to hand leadership to.
        assert await env.fails(SC.FAILED_PRECONDITION, a.TransferLeadership(
            zero_pb2.TransferLeadershipRequest(), metadata=ADMIN_MD))
        chunks = [c async for c in a.Backup(zero_pb2.BackupRequest(), metadata=ADMIN_MD)]
        assert chunks[-1].last and backup.decode(b"".join(c.data for c in chunks)).state.member(m.id) is None
        assert TOKEN not in env.logs.getvalue()

    run_env(tmp_path, body, admin_token=TOKEN)


@pytest.mark.timeout(30)
def test_health_reflection_and_http(tmp_path) -> None:
    async def body(env: Env) -> None:
        hstub = health_pb2_grpc.HealthStub(env.channel)

        async def serving() -> bool:
            r = await hstub.Check(health_pb2.HealthCheckRequest(service="zero.v1.Zero"))
            return r.status == health_pb2.HealthCheckResponse.SERVING

        await until(serving, 5, message="gRPC health SERVING")

        watch = hstub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()

        refl = reflection_pb2_grpc.ServerReflectionStub(env.channel)
        names: set[str] = set()
        async for resp in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            names |= {s.name for s in resp.list_services_response.service}
        assert {"zero.v1.Zero", "zero.v1.ZeroAdmin", "grpc.health.v1.Health"} <= names

        await env.zero.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"))
        await env.zero.ShouldServe(zero_pb2.Tablet(predicate="friend", group_id=1))
        async with aiohttp.ClientSession() as s:
            async with s.get(env.http + "/health") as r:
                assert r.status == 200
                h = await r.json()
            assert h["role"] == "LEADER" and h["raft_id"] == 1 and h["leader_id"] == 1
            assert h["applied"] == h["commit"] >= 1 and h["term"] >= 1
            async with s.get(env.http + "/live") as r:
                assert r.status == 200
            async with s.get(env.http + "/state") as r:
                assert r.status == 200
                st = json.loads(await r.text())
            assert st["groups"]["1"]["tablets"]["friend"]["group_id"] == 1  # snake_case names
            assert st["cluster_id"] and st["zeros"]["1"]["leader"]
            async with s.get(env.http + "/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await r.text()
            for name in ("zero_raft_term", "zero_is_leader", "zero_raft_applied_index", "zero_grpc_requests_total",
                         "zero_wal_fsync_seconds_bucket", "zero_tablets"):
                assert name in text, name
            async with s.get(env.http + "/") as r:
                page = await r.text()
            assert r.status == 200 and "friend" in page and "dn1:7080" in page and "Zeros" in page

    run_env(tmp_path, body)


def test_admin_check() -> None:
    check_admin(None, ())
    check_admin(TOKEN, (("authorization", f"Bearer {TOKEN}"),))
    check_admin(TOKEN, (("authorization", f"bearer {TOKEN}"),))
    with pytest.raises(UnauthenticatedError):
        check_admin(TOKEN, (("other", "x"),))
    with pytest.raises(PermissionDeniedError):
        check_admin(TOKEN, (("authorization", f"Bearer {TOKEN}x"),))


def test_follower_replies_carry_the_leader() -> None:
    zeros = {2: zero_pb2.Member(id=2, addr="zero2:5080")}
    node = types.SimpleNamespace(is_leader=False, leader_id=2, metrics=None,
                                 state=types.SimpleNamespace(zeros=zeros))
    from zero.metrics import Metrics
    icpt = Interceptor(NodeSlot(node), metrics=Metrics(), admin_token=None, logger=None)  # type: ignore[arg-type]
    got: list[tuple[tuple[str, str], ...]] = []
    ctx = types.SimpleNamespace(set_trailing_metadata=got.append, invocation_metadata=lambda: ())
    icpt.admit(Route.of("/zero.v1.Zero/Heartbeat"), ctx)  # type: ignore[arg-type]
    assert got == [(("zero-leader-id", "2"), ("zero-leader-addr", "zero2:5080"))]


def test_run_flags() -> None:
    p = cli.build_parser()
    assert cli.parse_duration("100ms") == pytest.approx(0.1)
    assert cli.parse_duration("0.1s") == pytest.approx(0.1)
    assert cli.parse_duration("1m") == 60 and cli.parse_duration("1m30s") == 90
    for bad in ("5", "ms", "1x", "", "-1s"):
        with pytest.raises(ValueError):
            cli.parse_duration(bad)
    cfg = cli.config_from_args(p.parse_args(["run"]), {})
    assert (cfg.grpc_addr, cfg.http_addr, cfg.data_dir, cfg.my, cfg.raft_id) == (
        "0.0.0.0:5080", "0.0.0.0:6080", "./zw", "localhost:5080", 0)
    assert (cfg.tick, cfg.election_ticks, cfg.replicas, cfg.snapshot_after) == (0.1, 5, 1, 10_000)
    env = {"ZERO_GRPC_ADDR": "127.0.0.1:7000", "ZERO_TICK": "50ms", "ZERO_ADMIN_TOKEN": "tok",
           "ZERO_SNAPSHOT_AFTER": "500", "ZERO_REPLICAS": "3"}
    cfg = cli.config_from_args(p.parse_args(["run", "--tick", "20ms"]), env)
    assert cfg.grpc_addr == "127.0.0.1:7000" and cfg.my == "localhost:7000" and cfg.tick == pytest.approx(0.02)
    assert cfg.admin_token == "tok" and cfg.snapshot_after == 500 and cfg.replicas == 3
    assert "tok" not in repr(cfg)
    refused = [["--peer", "not an address"], ["--tls-dir", "/tls"], ["--force-new-cluster", "--peer", "z:5080"], ["--rebalance-interval", "soon"],
               ["--move-timeout", "0"],
               ["--tick", "5"], ["--election-ticks", "1"], ["--grpc-addr", "nope"], ["--log-format", "xml"],
               ["--raft-id", "0"], ["--admin-token", "a b"]]
    for args in refused:
        with pytest.raises(cli.UsageError):
            cli.config_from_args(p.parse_args(["run", *args]), {})
    with pytest.raises(cli.UsageError, match="ZERO_PEER"):
        cli.config_from_args(p.parse_args(["run"]), {"ZERO_PEER": "no port"})
    assert cli.config_from_args(p.parse_args(["run"]), {"ZERO_PEER": "z:5080"}).peer == "z:5080"
    assert cli.config_from_args(p.parse_args(["run", "--rebalance-interval", "0"]), {}).rebalance_interval == 0
    assert cli.config_from_args(p.parse_args(["run", "--rebalance-interval", "30s"]), {}).rebalance_interval == 30
