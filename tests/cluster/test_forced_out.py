"""An old zero after `zero run --force-new-cluster` on another zero (issue "Operators'
side", item 5), with real processes: its peer refuses it with CLUSTER_MISMATCH, and
instead of retrying forever it exits 1 with a message naming both cluster ids, what
happened and what to do. The forced zero keeps serving. And the guard: a foreign zero at
a member's address never stops a zero that hears from its own cluster. Every wait polls
with a deadline; every process is killed in a finally."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from procs import ProcCluster
from support import until
from zero.replica import transport
from zero.pb import zero_pb2


@pytest.mark.timeout(120)
def test_old_zero_of_a_cluster_forced_anew_exits_saying_what_to_do(tmp_path: Path) -> None:
    cluster = ProcCluster(tmp_path, 3)
    try:
        cluster.start()
        z1, z2, z3 = cluster.zeros
        old_cid = z1.stub.GetState(zero_pb2.GetStateRequest(), timeout=5).cluster_id
        # The majority is lost (their data dirs stay); the survivor is forced anew.
        for z in (z2, z3):
            z.kill9()
        assert z1.stop() == 0
        z1.start("--force-new-cluster")
        z1.wait_healthy(30)
        new_cid = until(lambda: z1.stub.GetState(zero_pb2.GetStateRequest(), timeout=5).cluster_id, 10,
                        message="the new cluster id")
        assert new_cid and new_cid != old_cid

        # Old zero 2 comes back on its old data dir: zero 1 refuses it, zero 3 is gone.
        z2.start()
        code = z2.wait_exit(60)
        log = z2.log_tail(20000)
        assert code == 1, log
        line = next((ln for ln in log.splitlines() if ln.startswith("zero: removed from the cluster:")), "")
        assert line, log
        for words in (old_cid, new_cid, "zero 1", "--force-new-cluster", "fresh data dir", "--peer"):
            assert words in line, line
        assert "Traceback" not in log
        # The forced zero never noticed beyond refusing, and still serves.
        assert z1.running
        z1.wait_healthy(10)
    finally:
        cluster.cleanup()


@pytest.mark.timeout(120)
def test_a_foreign_zero_at_a_peers_address_stops_nobody(tmp_path: Path) -> None:
    """The guard: a zero of another cluster answering at a member's address (its data
    dir emptied and started anew with the same id and address) is refused forever by
    the leader's transport, which keeps hearing from its other peer: nobody stops."""
    cluster = ProcCluster(tmp_path, 3)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        other, victim = [z for z in cluster.zeros if z is not leader]
        rid = victim.raft_id
        victim.kill9()
        shutil.rmtree(victim.data_dir)
        victim.start("--raft-id", str(rid))  # no --peer: a new one-zero cluster at the same address
        victim.wait_healthy(30)
        foreign = victim.stub.GetState(zero_pb2.GetStateRequest(), timeout=5).cluster_id
        assert foreign != leader.stub.GetState(zero_pb2.GetStateRequest(), timeout=5).cluster_id

        def refusals() -> float:
            code, body = http_text(leader.http + "/metrics")
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines()
                       if ln.startswith("zero_peer_refusals_total{") and 'reason="CLUSTER_MISMATCH"' in ln)

        until(lambda: refusals() >= 3, 20, message="the leader refused by the foreign zero")
        first = time.monotonic()
        while time.monotonic() - first < 2 * transport.MISMATCH_PERSIST:
            for z in (leader, other):
                z.check_alive()
            time.sleep(0.5)
        assert refusals() > 5
        for z in (leader, other, victim):
            z.check_alive()
        leader.wait_healthy(10)
        other.wait_healthy(10)
    finally:
        cluster.cleanup()


def http_text(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""
