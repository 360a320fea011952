"""Zero health as the leader sees it, in every answer that shows zeros (issue "Operators'
side", item 4b), with real `zero run` processes: /state and GetState on any zero,
`zero admin state` (human and --json), `zero admin status` on a follower (the leader's
peers, naming who answered) and StreamMembership relayed by a follower. A kill -9'd zero
shows unhealthy everywhere, live ones healthy; after a leader's death, the follower
shows the new leader's view. Every wait polls with a deadline; every process is killed
in a finally."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from procs import REPO, ProcCluster, ZeroProc, clean_env, http_json
from support import until
from zero.pb import zero_pb2, zero_pb2_grpc


def zero_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zero", *args], cwd=REPO, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def state_health(z: ZeroProc) -> dict[int, bool] | None:
    """/state on `z`: raft id -> healthy (None when it does not answer 200)."""
    code, body = http_json(z.http + "/state", timeout=2.0)
    if code != 200:
        return None
    return {int(k): bool(v.get("healthy", False)) for k, v in body.get("zeros", {}).items()}


def grpc_health(z: ZeroProc) -> dict[int, bool] | None:
    """GetState asked of `z` (a follower forwards it): raft id -> healthy."""
    try:
        st = z.stub.GetState(zero_pb2.GetStateRequest(), timeout=2)
    except grpc.RpcError:
        return None
    return {zid: m.healthy for zid, m in st.zeros.items()}


class Watcher:
    """StreamMembership through one zero, in a thread: each zero's healthy flag as the
    updates say (a full state first, then deltas)."""

    def __init__(self, addr: str) -> None:
        self.updates: queue.Queue[zero_pb2.MembershipUpdate] = queue.Queue()
        self.zeros: dict[int, bool] = {}
        self._channel = grpc.insecure_channel(addr)
        self._call = zero_pb2_grpc.ZeroStub(self._channel).StreamMembership(zero_pb2.StreamMembershipRequest())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for u in self._call:
                self.updates.put(u)
        except grpc.RpcError:
            pass

    def health(self) -> dict[int, bool]:
        while True:
            try:
                u = self.updates.get_nowait()
            except queue.Empty:
                return dict(self.zeros)
            for zid, z in u.state.zeros.items():
                self.zeros[zid] = z.healthy
            for zid in u.removed_zeros:
                self.zeros.pop(zid, None)

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()
        self._thread.join(5)


@pytest.mark.timeout(150)
def test_every_answer_shows_zero_health_as_the_leader_sees_it(tmp_path: Path) -> None:
    cluster = ProcCluster(tmp_path, 3)
    watcher: Watcher | None = None
    try:
        cluster.start()
        leader = cluster.wait_leader()
        followers = [z for z in cluster.zeros if z is not leader]
        for z in cluster.zeros:
            z.wait_healthy()
        ids = {z.name: z.raft_id for z in cluster.zeros}
        all_live = {rid: True for rid in ids.values()}
        # Live peers are healthy in every answer, on every zero (before: only itself).
        for z in cluster.zeros:
            until(lambda z=z: state_health(z) == all_live, 20, message=f"/state on {z.name}: every zero healthy")
            until(lambda z=z: grpc_health(z) == all_live, 20, message=f"GetState via {z.name}: every zero healthy")

        asked, dead = followers
        watcher = Watcher(asked.addr)  # relayed from the leader by a follower
        until(lambda: watcher.health() == all_live, 20, message="the stream's full state: every zero healthy")

        dead.kill9()
        want = {**all_live, ids[dead.name]: False}
        for z in (asked, leader):
            until(lambda z=z: state_health(z) == want, 20, message=f"/state on {z.name}: {dead.name} unhealthy")
            until(lambda z=z: grpc_health(z) == want, 20, message=f"GetState via {z.name}: {dead.name} unhealthy")
        # Liveness changes travel on the stream (relayed by the follower).
        until(lambda: watcher.health() == want, 20, message=f"the stream says {dead.name} is unhealthy")

        # zero admin state, asked of the follower: human and --json.
        p = zero_cli("admin", "state", "--addr", asked.addr)
        assert p.returncode == 0, p.stderr
        lines = {int(ln.split()[0]): ln for ln in p.stdout.splitlines()
                 if ln.startswith("  ") and ln.split()[0].isdigit()}
        assert "UNHEALTHY" in lines[ids[dead.name]], p.stdout
        for z in (asked, leader):
            assert "UNHEALTHY" not in lines[ids[z.name]] and "healthy" in lines[ids[z.name]], p.stdout
        assert "leader" in lines[ids[leader.name]], p.stdout
        p = zero_cli("admin", "state", "--addr", asked.addr, "--json")
        assert p.returncode == 0, p.stderr
        zeros = json.loads(p.stdout)["zeros"]
        assert {int(k): bool(v.get("healthy")) for k, v in zeros.items()} == want

        # zero admin status on a follower: the peers as the leader sees them, saying who answered.
        p = zero_cli("admin", "status", "--addr", asked.addr)
        assert p.returncode == 0, p.stderr
        out = p.stdout
        assert f"zero {ids[asked.name]} at {asked.addr} answered" in out, out
        assert f"as the leader, zero {ids[leader.name]} at {leader.addr}, sees them" in out, out
        # The peers are the indented lines under the header (the oracle's line follows them).
        peers = {int(ln.split()[0]): ln for ln in out.split("sees them")[1].splitlines()[1:] if ln.startswith("  ")}
        assert set(peers) == set(ids.values()), out
        assert "UNHEALTHY" in peers[ids[dead.name]], out
        assert "UNHEALTHY" not in peers[ids[asked.name]] and "UNHEALTHY" not in peers[ids[leader.name]], out
        p = zero_cli("admin", "status", "--addr", asked.addr, "--json")
        assert p.returncode == 0, p.stderr
        doc: dict[str, Any] = json.loads(p.stdout)
        assert doc["role"] == "FOLLOWER" and doc["answered_by"]["raft_id"] == str(ids[asked.name])
        lead_doc = doc["leader_status"]
        assert lead_doc["role"] == "LEADER" and lead_doc["answered_by"]["addr"] == leader.addr
        assert {int(k): v["recent_active"] for k, v in lead_doc["progress"].items()} == want

        # It comes back: healthy again, everywhere.
        dead.start()
        dead.wait_healthy(30)
        for z in cluster.zeros:
            until(lambda z=z: state_health(z) == all_live, 20, message=f"/state on {z.name}: {dead.name} healthy again")
        until(lambda: watcher.health() == all_live, 20, message=f"the stream says {dead.name} is healthy again")
        watcher.close()
        watcher = None

        # The leader dies: the new leader's first-hand view reaches the follower's /state.
        leader.kill9()
        rest = [z for z in cluster.zeros if z is not leader]
        new = cluster.wait_leader(30, among=rest)
        follower = next(z for z in rest if z is not new)
        want = {**all_live, ids[leader.name]: False}
        until(lambda: state_health(follower) == want, 20,
              message=f"/state on {follower.name}: the old leader unhealthy")
        until(lambda: grpc_health(follower) == want, 20,
              message=f"GetState via {follower.name}: the old leader unhealthy")
        p = zero_cli("admin", "status", "--addr", follower.addr)
        assert p.returncode == 0 and f"as the leader, zero {ids[new.name]}" in p.stdout, p.stdout + p.stderr
    finally:
        if watcher is not None:
            watcher.close()
        cluster.cleanup()
