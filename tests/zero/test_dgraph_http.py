"""Dgraph Zero's HTTP verbs (zero/frontdoor/dgraph_http.py): the requests from Dgraph's
documentation replayed against live zeros (three ZeroApps and two reference data nodes
in this process, on free loopback ports), on the leader and on a follower (which
forwards), the admin-token rules, bad input (400, nothing changed), no leader (503),
and `/state?format=dgraph` against GetState."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from zero.app import ZeroApp
from zero.datanode.server import DataNode, DataNodeConfig
from zero.frontdoor.dgraph_http import DgraphVerbs, dgraph_state
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import zero_pb2, zero_pb2_grpc

from support.aio import until
from zeroapps import app_cluster

TOKEN = "s3cret-token"
H = {"X-Dgraph-AuthToken": TOKEN}  # Dgraph v25: the token travels in this header

# Dgraph's documentation lists these GET requests on Zero's HTTP port (6080): the
# "Zero HTTP Endpoints" of https://docs.dgraph.io/admin/admin-endpoints (dgraph-io/dgraph-docs,
# docusaurus-docs/docs/admin/admin-endpoints.md; the same list in v24.1's admin/dgraph-zero.md),
# and /state from "View Cluster State" (admin/admin-tasks/view-cluster-state.md). A runbook
# sends them as (with --security "token=..." on Zero):
#   curl -H "X-Dgraph-AuthToken: $TOKEN" "localhost:6080/assign?what=uids&num=100"
#   curl -H "X-Dgraph-AuthToken: $TOKEN" "localhost:6080/assign?what=timestamps&num=100"
#   curl -H "X-Dgraph-AuthToken: $TOKEN" "localhost:6080/removeNode?id=3&group=2"
#   curl -H "X-Dgraph-AuthToken: $TOKEN" "localhost:6080/moveTablet?tablet=name&group=2"
#   curl "localhost:6080/state"   (here /state?format=dgraph for Dgraph's JSON)
DOC_ASSIGN_UIDS = "/assign?what=uids&num=100"
DOC_ASSIGN_TS = "/assign?what=timestamps&num=100"
DOC_REMOVE_NODE = "/removeNode?id=3&group=2"
DOC_MOVE_TABLET = "/moveTablet?tablet=name&group=2"

DGRAPH_STATE_KEYS = ["counter", "groups", "zeros", "maxUID", "maxTxnTs", "maxNsID", "maxRaftId", "removed", "cid"]
MEMBER_KEYS = {"id", "groupId", "addr", "leader", "amDead", "lastUpdate", "learner", "clusterInfoOnly",
               "forceGroupId"}
TABLET_KEYS = {"groupId", "predicate", "force", "onDiskBytes", "remove", "readOnly", "moveTs", "uncompressedBytes"}


class Http:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, app: ZeroApp, path: str, headers: dict[str, str] | None = None,
                  method: str = "GET") -> tuple[int, str, Any]:
        """(status, content type, body: parsed JSON when JSON, else text)."""
        async with self.session.request(method, f"http://127.0.0.1:{app.http_port}{path}", headers=headers) as r:
            text = await r.text()
            body: Any = json.loads(text) if r.content_type == "application/json" and text else text
            return r.status, r.content_type, body


def _err(body: Any) -> tuple[str, str]:
    """Dgraph's error JSON: (message, extensions.code)."""
    assert isinstance(body, dict) and list(body) == ["errors"], body
    (e,) = body["errors"]
    return e["message"], e["extensions"]["code"]


def _ids(body: Any) -> tuple[int, int]:
    assert isinstance(body, dict) and set(body) == {"startId", "endId", "readOnly"}, body
    assert all(isinstance(v, str) for v in body.values()), body  # 64-bit numbers are strings, as protojson's
    assert body["readOnly"] == "0"
    return int(body["startId"]), int(body["endId"])


def _digest(st: zero_pb2.MembershipState) -> Any:
    """What a refused request must not change (sizes and liveness move on their own)."""
    return ({gid: (sorted((m.id, m.addr, m.learner) for m in g.members.values()),
                   sorted((t.predicate, t.group_id, t.read_only) for t in g.tablets.values()))
             for gid, g in st.groups.items()},
            sorted(st.zeros), [(m.id, m.group_id) for m in st.removed])


# -- the shape, without a cluster -------------------------------------------------------------------
def test_dgraph_state_is_dgraphs_membership_state_json() -> None:
    st = zero_pb2.MembershipState(version=42, max_uid=20000, max_txn_ts=30000, cluster_id="cid-1")
    st.groups[1].members[7].CopyFrom(zero_pb2.Member(id=7, group_id=1, addr="dn7:7080", leader=True, healthy=True,
                                                     last_heartbeat_ms=1_700_000_123_456))
    st.groups[1].tablets["name"].CopyFrom(zero_pb2.Tablet(predicate="name", group_id=1, size_bytes=1 << 40,
                                                          read_only=True, move_ts=99))
    st.zeros[1].CopyFrom(zero_pb2.Member(id=1, addr="z1:5080", leader=True))
    st.zeros[3].CopyFrom(zero_pb2.Member(id=3, addr="z3:5080"))
    st.removed.add(id=4, group_id=0, addr="z4:5080")
    st.removed.add(id=8, group_id=1, addr="dn8:7080")
    assert dgraph_state(st) == {
        "counter": "42",
        "groups": {"1": {
            "members": {"7": {"id": "7", "groupId": 1, "addr": "dn7:7080", "leader": True, "amDead": False,
                              "lastUpdate": "1700000123", "learner": False, "clusterInfoOnly": False,
                              "forceGroupId": False}},
            "tablets": {"name": {"groupId": 1, "predicate": "name", "force": False, "onDiskBytes": str(1 << 40),
                                 "remove": False, "readOnly": True, "moveTs": "99", "uncompressedBytes": "0"}},
            "snapshotTs": "0", "checksum": "0", "checkpointTs": "0"}},
        "zeros": {"1": {"id": "1", "groupId": 0, "addr": "z1:5080", "leader": True, "amDead": False,
                        "lastUpdate": "0", "learner": False, "clusterInfoOnly": False, "forceGroupId": False},
                  "3": {"id": "3", "groupId": 0, "addr": "z3:5080", "leader": False, "amDead": False,
                        "lastUpdate": "0", "learner": False, "clusterInfoOnly": False, "forceGroupId": False}},
        "maxUID": "20000", "maxTxnTs": "30000", "maxNsID": "0",
        "maxRaftId": "4",  # the highest zero id ever used, removed ones too
        "removed": [{"id": "4", "groupId": 0, "addr": "z4:5080", "leader": False, "amDead": True,
                     "lastUpdate": "0", "learner": False, "clusterInfoOnly": False, "forceGroupId": False},
                    {"id": "8", "groupId": 1, "addr": "dn8:7080", "leader": False, "amDead": True,
                     "lastUpdate": "0", "learner": False, "clusterInfoOnly": False, "forceGroupId": False}],
        "cid": "cid-1",
    }
    assert list(dgraph_state(zero_pb2.MembershipState())) == DGRAPH_STATE_KEYS


def test_with_tls_and_no_token_the_mutating_verbs_are_refused() -> None:
    """The HTTP port has no client certificates: with --tls-dir and no --admin-token it
    would be a way around them, so the verbs refuse (before any call is made)."""
    class FakeNode:
        log = type("L", (), {"warning": staticmethod(lambda *a, **k: None)})()

    async def main() -> None:
        app = web.Application()
        DgraphVerbs(FakeNode(), admin_token=None, grpc_addr="127.0.0.1:1", grpc_port=1,  # type: ignore[arg-type]
                    creds=type("Tls", (), {"credentials": grpc.ssl_channel_credentials()})()).register(app)
        async with TestClient(TestServer(app)) as client:
            for path in (DOC_ASSIGN_UIDS, DOC_MOVE_TABLET, DOC_REMOVE_NODE):
                r = await client.get(path, headers=H)
                assert r.status == 403, path
                msg, code = _err(await r.json())
                assert code == "ErrorUnauthorized" and "--tls-dir" in msg and "--admin-token" in msg, msg
    asyncio.run(main())


# -- live zeros -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_dgraph_docs_requests_against_live_zeros(tmp_path) -> None:
    async def main() -> None:
        apps = await app_cluster(tmp_path, 3, admin_token=TOKEN, rebalance_interval=0.0)
        nodes: list[DataNode] = []
        session = aiohttp.ClientSession()
        http = Http(session)
        channels: list[grpc.aio.Channel] = []
        try:
            leader = next(a for a in apps if a.node.is_leader)
            follower, other = [a for a in apps if a is not leader]
            zaddrs = tuple(f"127.0.0.1:{a.grpc_port}" for a in apps)
            for g in (1, 2):
                d = DataNode(DataNodeConfig(zero=zaddrs, addr="127.0.0.1:0", group=g, size_interval=0.1,
                                            heartbeat_interval=0.1, fence_poll=0.05, chunk_bytes=4096),
                             log_stream=io.StringIO())
                await d.start()
                nodes.append(d)
            await until(lambda: all(leader.liveness._seen.get(d.member_id) for d in nodes), 20, message="heartbeats")
            lch = grpc.aio.insecure_channel(f"127.0.0.1:{leader.grpc_port}")
            channels.append(lch)
            zstub = zero_pb2_grpc.ZeroStub(lch)
            dch = grpc.aio.insecure_channel(nodes[0].addr)
            channels.append(dch)
            for k in range(50):  # group 1 claims and fills the tablet "name"
                await dng.DataNodeStub(dch).Put(dn.PutRequest(tablet="name", key=b"k%d" % k, value=b"v" * 100))
            assert leader.node.state.tablet("name").group_id == 1
            # A third member, a learner of group 2: member 3, the one the docs remove.
            m3 = (await zstub.Connect(zero_pb2.ConnectRequest(addr="dn3:7080", group_id=2, learner=True))).member
            assert (m3.id, m3.group_id) == (3, 2)

            # /assign, as the docs send it, on the leader and on a follower (forwarded).
            last_uid = last_ts = 0
            for app in (leader, follower, follower, leader):
                status, ctype, body = await http.get(app, DOC_ASSIGN_UIDS, H)
                assert (status, ctype) == (200, "application/json"), body
                start, end = _ids(body)
                assert end - start + 1 == 100 and start > last_uid
                last_uid = end
                status, ctype, body = await http.get(app, DOC_ASSIGN_TS, H)
                assert status == 200, body
                start, end = _ids(body)
                assert end - start + 1 == 100 and start > last_ts
                last_ts = end
            assert (await zstub.Timestamps(zero_pb2.TimestampsRequest(count=1))).start_id > last_ts
            assert leader.node.state.max_uid >= last_uid
            # Dgraph reads num as Go's ParseUint(s, 0, 64): 0x.. is hex.
            status, _, body = await http.get(follower, "/assign?what=uids&num=0x10", H)
            start, end = _ids(body)
            assert status == 200 and end - start + 1 == 16
            last_uid = end

            # /moveTablet: from a follower (forwarded: the move runs on the leader), then back.
            status, ctype, body = await http.get(follower, DOC_MOVE_TABLET, H)
            assert (status, ctype) == (200, "text/plain"), body
            assert body == "namespace: 0. Predicate: [name] moved from group [1] to [2]"
            assert leader.node.state.tablet("name").group_id == 2
            status, _, body = await http.get(leader, "/moveTablet?tablet=name&group=1", {"Authorization":
                                                                                         f"Bearer {TOKEN}"})
            assert (status, body) == (200, "namespace: 0. Predicate: [name] moved from group [2] to [1]"), body
            assert leader.node.state.tablet("name").group_id == 1

            # The admin token: missing is 401, wrong is 403, in either header; nothing happens.
            before = _digest(leader.node.state.state_copy())
            for path in (DOC_ASSIGN_UIDS, DOC_ASSIGN_TS, DOC_MOVE_TABLET, DOC_REMOVE_NODE):
                for app in (leader, follower):
                    for headers, want in ((None, 401), ({"X-Dgraph-AuthToken": "wrong"}, 403),
                                          ({"Authorization": "Bearer wrong"}, 403),
                                          ({"Authorization": f"Basic {TOKEN}"}, 401)):
                        status, ctype, body = await http.get(app, path, headers)
                        assert (status, ctype) == (want, "application/json"), (path, headers, body)
                        msg, code = _err(body)
                        assert code == "ErrorUnauthorized", body
                        assert TOKEN not in msg
                        if want == 401:
                            assert "X-Dgraph-AuthToken" in msg, msg
            # Bad input: 400 (409 for a conflict with the state), Dgraph's error JSON, a clear message.
            bad = [
                ("/assign?what=uids", 400, "num not passed"),
                ("/assign?what=uids&num=abc", 400, "Error while parsing num"),
                ("/assign?what=uids&num=-5", 400, "Error while parsing num"),
                ("/assign?what=uids&num=010", 400, "Error while parsing num"),
                ("/assign?what=uids&num=18446744073709551616", 400, "Error while parsing num"),
                ("/assign?what=uids&num=0", 400, "between 1 and 1,000,000"),
                ("/assign?what=uids&num=1000001", 400, "between 1 and 1,000,000"),
                ("/assign?what=timestamps&num=0", 400, "between 1 and 1,000,000"),
                ("/assign?what=nsids&num=10", 400, "Invalid what: [nsids]. Must be one of: [uids, timestamps]"),
                ("/assign?num=10", 400, "Invalid what: []"),
                ("/moveTablet?group=2", 400, "tablet is a mandatory query parameter"),
                ("/moveTablet?tablet=name&group=x", 400, "Query parameter 'group' should contain a valid integer"),
                ("/moveTablet?tablet=name", 400, "Query parameter 'group' should contain a valid integer"),
                ("/moveTablet?tablet=name&group=9", 400, "destination group 9 does not exist"),
                ("/moveTablet?tablet=name&group=0", 400, "dst_group is 0"),
                ("/moveTablet?tablet=nope&group=2", 400, "'nope' is not served by any group"),
                ("/moveTablet?tablet=name&group=2&namespace=5", 400, "namespace"),
                ("/moveTablet?tablet=name&group=1", 409, "already served by group 1"),
                ("/removeNode?group=2", 400, "id not passed"),
                ("/removeNode?id=3", 400, "group not passed"),
                ("/removeNode?id=99&group=2", 400, "member 99"),
                ("/removeNode?id=1&group=9", 400, "group 9 does not exist"),
                ("/removeNode?id=0&group=2", 400, "node_id is 0"),
                ("/removeNode?id=1&group=4294967296", 400, "Error while parsing group"),
                ("/removeNode?id=99&group=0", 400, "zero 99 is not a member"),
            ]
            for i, (path, want, text) in enumerate(bad):
                status, ctype, body = await http.get((leader, follower)[i % 2], path, H)
                assert (status, ctype) == (want, "application/json"), (path, body)
                msg, code = _err(body)
                assert code == "ErrorInvalidRequest" and text in msg, (path, msg)
            for method in ("POST", "PUT", "DELETE", "HEAD"):
                status, _, body = await http.get(follower, DOC_ASSIGN_UIDS, H, method=method)
                assert status == 405, (method, body)
                if method != "HEAD":
                    assert _err(body)[1] == "ErrorInvalidMethod"
            # Nothing was changed or handed out: the next range follows the last one.
            assert _digest(leader.node.state.state_copy()) == before
            status, _, body = await http.get(follower, "/assign?what=uids&num=1", H)
            assert status == 200 and _ids(body)[0] == last_uid + 1, body

            # /state?format=dgraph is GetState in Dgraph's shape, on either zero; /state stays.
            for app in (follower, leader):
                for _ in range(50):  # a size report may commit between the two reads
                    st = await zstub.GetState(zero_pb2.GetStateRequest())
                    status, ctype, ds = await http.get(app, "/state?format=dgraph")
                    if status == 200 and ds.get("counter") == str(st.version):
                        break
                assert (status, ctype) == (200, "application/json"), ds
                _check_dgraph_state(ds, st)
            status, _, plain = await http.get(follower, "/state")
            assert status == 200 and "max_uid" in plain and "maxUID" not in plain  # SPEC's /state, unchanged
            status, _, body = await http.get(follower, "/state?format=yaml")
            assert status == 400 and "format=dgraph" in body["error"], body

            # /removeNode as the docs send it: data-node member 3 of group 2.
            status, ctype, body = await http.get(follower, DOC_REMOVE_NODE, H)
            assert (status, ctype, body) == (200, "text/plain", "Removed node with group: 2, idx: 3")
            assert leader.node.state.member(3) is None
            _, _, ds = await http.get(follower, "/state?format=dgraph")
            assert {"id": "3", "groupId": 2, "amDead": True}.items() <= ds["removed"][-1].items(), ds["removed"]
            status, _, body = await http.get(leader, DOC_REMOVE_NODE, H)
            assert status == 409 and "already removed" in _err(body)[0], body
            # ... and a zero: group=0 and its raft id, asked of a follower.
            rid = other.node.raft_id
            status, _, body = await http.get(follower, f"/removeNode?id={rid}&group=0", H)
            assert (status, body) == (200, f"Removed node with group: 0, idx: {rid}"), body
            await until(lambda: rid not in leader.node.state.zeros and other.node.removed.is_set(), 20,
                        message="the zero removed")
            _, _, ds = await http.get(leader, "/state?format=dgraph")
            assert str(rid) not in ds["zeros"] and ds["maxRaftId"] == str(max(a.node.raft_id for a in apps))

            # No leader: the two zeros left lose one, so the other has no quorum: 503.
            await leader.stop()
            await until(lambda: not follower.node.leader_id, 20, message="no leader known")
            for path in (DOC_ASSIGN_UIDS, DOC_REMOVE_NODE, "/state?format=dgraph"):
                status, ctype, body = await http.get(follower, path, H)
                assert (status, ctype) == (503, "application/json"), (path, body)
                msg, code = _err(body)
                assert code == "Error" and "leader" in msg, msg
        finally:
            await session.close()
            for ch in channels:
                await ch.close()
            for d in nodes:
                await d.stop()
            for a in apps:
                await a.stop()
    asyncio.run(main())


def _check_dgraph_state(ds: dict[str, Any], st: zero_pb2.MembershipState) -> None:
    assert list(ds) == DGRAPH_STATE_KEYS
    assert (ds["counter"], ds["maxUID"], ds["maxTxnTs"], ds["cid"]) == (
        str(st.version), str(st.max_uid), str(st.max_txn_ts), st.cluster_id)
    assert set(ds["groups"]) == {str(g) for g in st.groups}
    for gid, g in st.groups.items():
        dg = ds["groups"][str(gid)]
        assert set(dg["members"]) == {str(m) for m in g.members}
        for mid, m in g.members.items():
            dm = dg["members"][str(mid)]
            assert set(dm) == MEMBER_KEYS
            assert (dm["id"], dm["groupId"], dm["addr"], dm["learner"], dm["amDead"]) == (
                str(mid), gid, m.addr, m.learner, False)
            assert isinstance(dm["lastUpdate"], str) and isinstance(dm["leader"], bool)
            if m.last_heartbeat_ms:  # the leader's liveness, also through a follower
                assert abs(int(dm["lastUpdate"]) - m.last_heartbeat_ms // 1000) <= 2
        assert set(dg["tablets"]) == set(g.tablets)
        for name, t in g.tablets.items():
            dt = dg["tablets"][name]
            assert set(dt) == TABLET_KEYS
            assert (dt["groupId"], dt["predicate"], dt["readOnly"], dt["moveTs"]) == (
                gid, name, t.read_only, str(t.move_ts))
            assert isinstance(dt["onDiskBytes"], str) and int(dt["onDiskBytes"]) >= 0
    assert set(ds["zeros"]) == {str(z) for z in st.zeros}
    for zid, z in st.zeros.items():
        dz = ds["zeros"][str(zid)]
        assert (dz["id"], dz["groupId"], dz["addr"], dz["leader"]) == (str(zid), 0, z.addr, z.leader)
    assert sum(z["leader"] for z in ds["zeros"].values()) == 1
    assert [(m["id"], m["groupId"]) for m in ds["removed"]] == [(str(m.id), m.group_id) for m in st.removed]
