"""Dgraph's HTTP verbs on real `zero run` processes, sent with curl exactly as Dgraph's
docs and runbooks send them (tests/zero/test_dgraph_http.py covers the verbs in depth,
real tablet moves included): two zeros started with --admin-token, each request asked
of the follower (which forwards it to the leader) and of the leader."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from procs import FAST, ProcCluster
from zero.pb import zero_pb2

TOKEN = "runbook-token"
CURL = shutil.which("curl")


def curl(port: int, path: str, *, token: str | None = TOKEN) -> tuple[int, str]:
    """`curl -s -H "X-Dgraph-AuthToken: $TOKEN" "localhost:6080/..."` (the docs' form, with
    this zero's port): (HTTP status, body)."""
    assert CURL is not None
    args = [CURL, "-s", "-w", "\n%{http_code}"]
    if token is not None:
        args += ["-H", f"X-Dgraph-AuthToken: {token}"]
    out = subprocess.run([*args, f"localhost:{port}{path}"], capture_output=True, text=True, timeout=30, check=True)
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.timeout(120)
def test_runbook_curl_lines_against_zero_run(tmp_path: Path) -> None:
    cluster = ProcCluster(tmp_path, 2, flags=(*FAST, "--admin-token", TOKEN, "--rebalance-interval", "0"))
    try:
        first, second = cluster.zeros  # started by hand: ProcCluster.start's RaftStatus polls carry no token
        first.start().wait_healthy(30)
        second.start("--peer", first.addr).wait_healthy(30)
        leader = cluster.wait_leader()
        follower = next(z for z in cluster.zeros if z is not leader)
        # Members 1..3 (3: a learner of group 2) and the tablet "name" in group 1.
        for addr, group, learner in (("dn1:7080", 1, False), ("dn2:7080", 2, False), ("dn3:7080", 2, True)):
            leader.stub.Connect(zero_pb2.ConnectRequest(addr=addr, group_id=group, learner=learner), timeout=5)
        leader.stub.ShouldServe(zero_pb2.Tablet(predicate="name", group_id=1), timeout=5)

        last = 0
        for z in (follower, leader):
            for path in ("/assign?what=uids&num=100", "/assign?what=timestamps&num=100"):
                code, body = curl(z.http_port, path)
                ids = json.loads(body)
                assert code == 200 and set(ids) == {"startId", "endId", "readOnly"}, body
                assert int(ids["endId"]) - int(ids["startId"]) == 99
            last = int(ids["endId"])
            code, body = curl(z.http_port, "/assign?what=uids&num=100", token=None)
            assert code == 401 and json.loads(body)["errors"][0]["extensions"]["code"] == "ErrorUnauthorized"

        code, body = curl(follower.http_port, "/state?format=dgraph", token=None)
        ds = json.loads(body)
        assert code == 200 and sorted(ds["zeros"]) == sorted(str(z.raft_id) for z in cluster.zeros)
        assert ds["zeros"][str(leader.raft_id)]["leader"] and int(ds["maxTxnTs"]) >= last
        assert ds["groups"]["1"]["tablets"]["name"]["groupId"] == 1
        assert ds["groups"]["2"]["members"]["3"]["learner"]

        # The data nodes here are names only: the move is refused, or rolled back when the
        # copy cannot reach the source (500, as Dgraph's failed move); Dgraph's error JSON.
        code, body = curl(follower.http_port, "/moveTablet?tablet=name&group=2")
        err = json.loads(body)["errors"][0]
        assert code in (409, 500, 503) and "group" in err["message"], body
        code, body = curl(leader.http_port, "/state?format=dgraph")
        tablet = json.loads(body)["groups"]["1"]["tablets"]["name"]
        assert (tablet["groupId"], tablet["readOnly"]) == (1, False), tablet

        code, body = curl(follower.http_port, "/removeNode?id=3&group=2")
        assert (code, body) == (200, "Removed node with group: 2, idx: 3")
        code, body = curl(leader.http_port, "/removeNode?id=3&group=2")
        assert code == 409 and "already removed" in json.loads(body)["errors"][0]["message"], body
    finally:
        cluster.cleanup()
