"""Seeded nemesis runs against three `zero run` processes on 127.0.0.1: the lease,
claim, connect and watcher workloads under kill -9, SIGSTOP/SIGCONT (also of the leader
for longer than the clients' deadline, with calls queued at it whose late answers are
checked), full-cluster restarts and leadership-transfer storms; a full restart at the
end; every checker must find nothing, and the run must not be vacuous
(checkers.liveness) (issue 11, item 1)."""

from __future__ import annotations

import pytest

from .loopback import LoopbackCluster
from .runner import pytest_timeout, run


@pytest.fixture
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path / "c", 3)
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.mark.timeout(pytest_timeout(15.0))
@pytest.mark.parametrize("faults", [
    ("kill9_random", "kill9_leader"),
    ("pause_random", "pause_leader", "pause_leader_long"),
    ("restart_all", "transfer_storm"),
    ("kill9_random", "kill9_leader", "pause_random", "pause_leader", "pause_leader_long", "restart_all",
     "transfer_storm"),
], ids=["kill9", "pause", "restart-transfer", "mixed"])
def test_nemesis_loopback(cluster, seed, soak_seconds, faults) -> None:
    duration = soak_seconds or 15.0
    r = run(cluster, name="loopback-" + "-".join(faults), seed=seed, duration=duration, faults=faults)
    r.check()
    assert r.faults >= 2 and r.operations > 50, r.summary()
