"""Placement through the ZeroAdmin API and `zero admin` on an in-process zero with
reference data nodes in three zones: rules obeyed by claims and moves, a policy that
moves tablets into place, dry runs, explanations, drains, group sizes, DeleteTablet and
BumpLease."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from support.aio import until
from zero.app import ZeroApp
from zero.config import RunConfig
from zero.datanode.server import DataNode, DataNodeConfig
from zero.ops.admin import add_admin_parser, run_admin
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import zero_pb2, zero_pb2_grpc

SC = grpc.StatusCode


class Env:
    def __init__(self, app: ZeroApp, nodes: list[DataNode]) -> None:
        self.app, self.nodes = app, nodes
        self.channels = [grpc.aio.insecure_channel(n.addr) for n in nodes]
        self.dn = [dng.DataNodeStub(c) for c in self.channels]
        self.zch = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
        self.admin = zero_pb2_grpc.ZeroAdminStub(self.zch)
        self.zero = zero_pb2_grpc.ZeroStub(self.zch)

    @property
    def state(self) -> Any:
        assert self.app.node is not None
        return self.app.node.state

    async def code(self, call: Any) -> tuple[Any, str]:
        try:
            await call
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details() or ""
        return SC.OK, ""


def _datanode(app: ZeroApp, zone: str) -> DataNode:
    return DataNode(DataNodeConfig(zero=(f"127.0.0.1:{app.grpc_port}",), addr="127.0.0.1:0", size_interval=0.1,
                                   heartbeat_interval=0.1, fence_poll=0.05, chunk_bytes=4096,
                                   labels=(("zone", zone),)), log_stream=io.StringIO())


@asynccontextmanager
async def cluster(tmp_path: Any, zones: str = "abc", **cfg: Any) -> AsyncIterator[Env]:
    app = ZeroApp(RunConfig(data_dir=str(tmp_path / "zw"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            tick=0.01, log_format="json", rebalance_interval=0.0, **cfg), log_stream=io.StringIO())
    await app.start()
    nodes: list[DataNode] = []
    channels: list[grpc.aio.Channel] = []
    try:
        node = app.node
        assert node is not None
        await until(lambda: node.is_leader and node.state.cluster_id, 10, message="a leader")
        for z in zones:
            d = _datanode(app, z)
            await d.start()
            nodes.append(d)
        assert app.liveness is not None
        await until(lambda: all(app.liveness._seen.get(d.member_id) for d in nodes), 10, message="heartbeats")
        env = Env(app, nodes)
        channels = [*env.channels, env.zch]
        yield env
    finally:
        for c in channels:
            await c.close()
        for d in nodes:
            await d.stop()
        await app.stop()


def rule(glob: str, pin: int = 0, *constraints: str) -> zero_pb2.PlacementRule:
    return zero_pb2.PlacementRule(tablet_glob=glob, pin_group=pin, constraints=constraints)


@pytest.mark.timeout(60)
def test_rules_claims_moves_dry_runs_and_explanations(tmp_path: Any) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            st = env.state
            assert {g: dict(m.labels) for g, grp in st.groups.items() for m in grp.members.values()} == {
                1: {"zone": "a"}, 2: {"zone": "b"}, 3: {"zone": "c"}}
            for k in range(50):
                await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"k%d" % k, value=b"v" * 100))
            assert st.group_of("p") == 1
            # Refused policies change nothing.
            for bad, code in ((rule("p", 9), SC.INVALID_ARGUMENT), (rule("p", 0, "zone=a", "zone=b"),
                                                                   SC.INVALID_ARGUMENT)):
                got, msg = await env.code(env.admin.SetPlacement(zero_pb2.PlacementPolicy(rules=[bad])))
                assert got == code, msg
            # A dry run answers the moves and changes nothing.
            dry = await env.admin.SetPlacement(zero_pb2.PlacementPolicy(rules=[rule("p", 0, "zone=c")], dry_run=True))
            assert dry.dry_run and [(m.tablet.predicate, m.target_group) for m in dry.moves] == [("p", 3)]
            assert "zone=c" in dry.moves[0].reasons[-1] and st.placement().version == 0
            # The real thing moves the tablet into place.
            pol = await env.admin.SetPlacement(zero_pb2.PlacementPolicy(
                rules=[rule("p", 0, "zone=c"), rule("pinned.*", 2), rule("q", 0, "zone=nowhere")]))
            assert pol.version > 0 and any("unsatisfied" in s for s in pol.status), pol.status
            await until(lambda: st.group_of("p") == 3, 20, message="p moved to zone c")
            ex = await env.admin.ExplainPlacement(zero_pb2.Tablet(predicate="p"))
            assert ex.satisfied and any("applies and holds" in r for r in ex.reasons), ex.reasons
            # A claim naming another group lands where the rule pins it; ShouldServe says so.
            got = await env.zero.ShouldServe(zero_pb2.Tablet(predicate="pinned.x", group_id=1))
            assert got.group_id == 2
            # A move breaking a rule is refused, naming it.
            code, msg = await env.code(env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=1)))
            assert code == SC.FAILED_PRECONDITION and "rule 1" in msg, msg
            # Compare-and-set.
            code, msg = await env.code(env.admin.SetPlacement(zero_pb2.PlacementPolicy(version=pol.version - 1)))
            assert code == SC.FAILED_PRECONDITION and "changed meanwhile" in msg
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_drain_then_remove_sizes_delete_and_bump(tmp_path: Any) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            st = env.state
            for k in range(20):
                await env.dn[2].Put(dn.PutRequest(tablet="t", key=b"k%d" % k, value=b"v" * 10))
            last = env.nodes[2].member_id
            code, msg = await env.code(env.admin.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=last, group_id=3)))
            assert code == SC.FAILED_PRECONDITION and "drain it first" in msg
            d = await env.admin.DrainGroup(zero_pb2.DrainGroupRequest(group_id=3))
            assert d.draining
            await until(lambda: not st.groups[3].tablets, 20, message="group 3 drained")
            await env.admin.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=last, group_id=3))
            r = await env.admin.SetGroupReplicas(zero_pb2.SetGroupReplicasRequest(group_id=1, replicas=3))
            assert r.replicas == 3 and list(r.surplus) == []
            code, _ = await env.code(env.admin.SetGroupReplicas(zero_pb2.SetGroupReplicasRequest(group_id=1,
                                                                                                 replicas=8)))
            assert code == SC.INVALID_ARGUMENT
            gone = await env.admin.DeleteTablet(zero_pb2.Tablet(predicate="t"))
            assert gone.deleted.predicate == "t" and st.tablet("t") is None
            before = await env.zero.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1))
            floor = before.end_id + 1_000_000
            bumped = await env.admin.BumpLease(zero_pb2.BumpLeaseRequest(kind=zero_pb2.UID, floor=floor))
            assert bumped.end_id == floor
            after = await env.zero.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1))
            assert after.start_id > floor, "an id below the bump's floor was handed out"
            same = await env.admin.BumpLease(zero_pb2.BumpLeaseRequest(kind=zero_pb2.UID, floor=5))
            assert same.start_id == 0 and same.end_id >= floor
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_group_sizes_fill_and_shrink(tmp_path: Any) -> None:
    async def main() -> None:
        async with cluster(tmp_path, replicas=3) as env:
            st = env.state
            assert [sorted(m.labels["zone"] for m in g.members.values()) for g in st.groups.values()] == [
                ["a", "b", "c"]]
            await env.admin.SetGroupReplicas(zero_pb2.SetGroupReplicasRequest(group_id=1, replicas=5))
            extra = [_datanode(env.app, z) for z in "de"]
            try:
                for d in extra:
                    await d.start()
                assert sorted(st.groups) == [1] and len(st.groups[1].members) == 5  # filled to its size
                r = await env.admin.SetGroupReplicas(zero_pb2.SetGroupReplicasRequest(group_id=1, replicas=3))
                newest = sorted((m.id for m in st.groups[1].members.values()), reverse=True)[:2]
                assert list(r.surplus) == newest
                for mid in r.surplus:
                    await env.admin.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=mid, group_id=1))
                assert len(st.groups[1].members) == 3
            finally:
                for d in extra:
                    await d.stop()
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_dead_zone_is_reported_and_nothing_moves_onto_it(tmp_path: Any) -> None:
    async def main() -> None:
        async with cluster(tmp_path, liveness_window=1.0) as env:
            st = env.state
            for k in range(10):
                await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"k%d" % k, value=b"v"))
            await env.nodes[2].stop()  # zone c, group 3
            await until(lambda: not _healthy(env, 3), 10, message="zone c dead")
            pol = await env.admin.SetPlacement(zero_pb2.PlacementPolicy(rules=[rule("p", 0, "zone=c")]))
            assert any("unsatisfied: no live group meets it" in line for line in pol.status), pol.status
            assert list(pol.moves) == []
            ex = await env.admin.ExplainPlacement(zero_pb2.Tablet(predicate="p"))
            assert not ex.satisfied and any("blocked" in r and "no live group meets it" in r for r in ex.reasons), \
                ex.reasons
            await asyncio.sleep(1.0)  # the placement duty had its chance
            assert st.group_of("p") == 1 and st.active_move() is None
    asyncio.run(main())


def _healthy(env: Env, gid: int) -> bool:
    """Whether the leader's liveness counts a member of group `gid` as healthy."""
    m = zero_pb2.Member()
    for member in env.state.groups[gid].members.values():
        m.CopyFrom(member)
        env.app.liveness.fill(m)
        if m.healthy:
            return True
    return False


def _admin(argv: list[str]) -> tuple[int, str, str]:
    import argparse

    parser = argparse.ArgumentParser(prog="zero")
    add_admin_parser(parser.add_subparsers(dest="cmd"))
    out, err = io.StringIO(), io.StringIO()
    code = run_admin(parser.parse_args(["admin", *argv]), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.timeout(60)
def test_cli_placement_set_get_explain_and_bad_files(tmp_path: Any) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            addr = ["--addr", f"127.0.0.1:{env.app.grpc_port}"]
            await env.zero.ShouldServe(zero_pb2.Tablet(predicate="user.name", group_id=1))
            good = tmp_path / "p.yaml"
            good.write_text("spread_label: zone\nrules:\n  - tablet: 'user.*'\n    pin_group: 2\n")
            code, out, err = await asyncio.to_thread(_admin, ["placement", "set", str(good), "--dry-run", *addr])
            assert code == 0 and "would move: 1 tablet" in out and "user.name: group 1 -> 2" in out, out + err
            code, out, err = await asyncio.to_thread(_admin, ["placement", "set", str(good), *addr])
            assert code == 0, err
            await until(lambda: env.state.group_of("user.name") == 2, 20, message="user.name moved")
            code, out, err = await asyncio.to_thread(_admin, ["placement", "get", "--json", *addr])
            doc = json.loads(out)
            assert code == 0 and doc["rules"] == [{"tablet_glob": "user.*", "pin_group": 2, "constraints": []}], doc
            assert doc["spread_label"] == "zone" and any("holds" in line for line in doc["status"]), doc
            code, out, err = await asyncio.to_thread(_admin, ["explain", "user.name", *addr])
            assert code == 0 and out.startswith("user.name: satisfied") and "pins to group 2" in out, out
            for text, why in (("rules: [", "not YAML"), ("rules:\n  - pin_group: 2\n", "tablet (a glob) is missing"),
                              ("rules:\n  - tablet: x\n    pin_group: -1\n", "pin_group"),
                              ("colour: red\n", "unknown key")):
                bad = tmp_path / "bad.yaml"
                bad.write_text(text)
                code, out, err = await asyncio.to_thread(_admin, ["placement", "set", str(bad), *addr])
                assert code == 2 and why in err and err.count("\n") == 1, (text, err)
            code, out, err = await asyncio.to_thread(_admin, ["placement", "set", str(tmp_path / "none.yaml"), *addr])
            assert code == 2 and "cannot read" in err
            code, out, err = await asyncio.to_thread(_admin, ["replicas", "1", "9", *addr])
            assert code == 2
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_labels_are_shown_on_the_status_page_and_by_zero_admin_state(tmp_path: Any) -> None:
    import urllib.request

    from zero.ops.state_text import state_text

    async def main() -> None:
        async with cluster(tmp_path) as env:
            url = f"http://127.0.0.1:{env.app.http_port}/status.json"
            body = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url, timeout=10).read()))
            shown = {m["addr"]: m["labels"] for g in body["groups"] for m in g["members"]}
            assert sorted(shown.values(), key=lambda d: d["zone"]) == [{"zone": "a"}, {"zone": "b"}, {"zone": "c"}]
            text = state_text(await env.zero.GetState(zero_pb2.GetStateRequest()))
            members = [line for line in text.splitlines() if line.strip().startswith("member ")]
            assert len(members) == 3 and all(f"zone={z}" in line for z, line in zip("abc", members)), text
    asyncio.run(main())
