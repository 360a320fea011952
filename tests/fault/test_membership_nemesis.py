"""Adding and removing zeros under load (issue 11): while the lease, claim, connect and
watcher workloads run, the nemesis adds a fourth zero (`zero run --peer`, waiting until
it is a voter), then removes one with `zero admin remove-node --group 0` - the leader
about 40 % of the time - so the cluster is back at three voters after each change. The
removed zero must exit by itself (it is told it was removed). Clients reach the cluster
through stable front addresses that follow the members. Then the usual heal, full
restart of the current members and every checker; and the final state lists exactly
the current members as zeros and every removed one as removed."""

from __future__ import annotations

import pytest

from zero.pb import zero_pb2

from .loopback import LoopbackCluster
from .runner import pytest_timeout, run


@pytest.fixture
def cluster(tmp_path, seed):
    c = LoopbackCluster(tmp_path / "c", 3, front=True, seed=seed)
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.mark.timeout(pytest_timeout(15.0))
@pytest.mark.parametrize("faults", [
    ("membership_change",),
    ("membership_change", "kill9_random", "pause_leader"),
], ids=["membership", "membership-kill9-pause"])
def test_membership_change_under_load(cluster, seed, soak_seconds, faults) -> None:
    duration = soak_seconds or 15.0
    r = run(cluster, name="membership-" + "-".join(faults), seed=seed, duration=duration, faults=faults)
    r.check()
    changes = r.history.ops(f="membership_change", type="ok")
    assert changes and r.operations > 50, r.summary()

    assert len(cluster.nodes) == 3, [z.name for z in cluster.nodes]
    not_by_itself = [x for x in cluster.removals if not x["exited_by_itself"]]
    assert not not_by_itself, f"removed zeros that did not exit by themselves: {not_by_itself}"
    state = cluster.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    assert set(state.zeros) == {z.raft_id for z in cluster.nodes}, (dict(state.zeros), cluster.removals)
    removed = {m.id for m in state.removed if not m.group_id}
    assert {x["raft_id"] for x in cluster.removals} <= removed, (removed, cluster.removals)
    st = cluster.leader().status()
    assert st is not None and sorted(st.progress) == sorted(z.raft_id for z in cluster.nodes)
    assert not any(p.learner for p in st.progress.values())
