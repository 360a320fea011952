"""Properties of the rebalancer's pure planner under placement rules
(zero/leader/planner.py): it never breaks a rule, never moves a pinned tablet, is
deterministic, and converges (a second round on its own result plans nothing)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from zero.leader.planner import Placement, plan_round
from zero.pb import zero_pb2
from zero.state.rules import Rules

ZONES = ["a", "b", "c"]
GLOBS = ["t1*", "t2*", "t*", "x*", "t3?"]


@hs.composite
def worlds(draw: hs.DrawFn) -> tuple[zero_pb2.MembershipState, Placement, set[int], set[str]]:
    st = zero_pb2.MembershipState()
    ngroups = draw(hs.integers(1, 5))
    for gid in range(1, ngroups + 1):
        g = st.groups[gid]
        for i in range(draw(hs.integers(0, 3))):
            mid = gid * 10 + i
            g.members[mid].CopyFrom(zero_pb2.Member(id=mid, group_id=gid, addr=f"n{mid}:1",
                                                    learner=draw(hs.booleans()) and i > 0,
                                                    labels={"zone": draw(hs.sampled_from(ZONES))}))
    for k in range(draw(hs.integers(0, 30))):
        gid = draw(hs.integers(1, ngroups))
        name = f"t{k}"
        st.groups[gid].tablets[name].CopyFrom(zero_pb2.Tablet(
            predicate=name, group_id=gid, size_bytes=draw(hs.integers(0, 1000)),
            read_rate=draw(hs.sampled_from([0.0, 0.5, 10.0, 300.0])), write_rate=draw(hs.sampled_from([0.0, 2.0])),
            read_only=draw(hs.integers(0, 20)) == 0))
    rules = []
    for _ in range(draw(hs.integers(0, 4))):
        glob = draw(hs.sampled_from(GLOBS))
        if draw(hs.booleans()):
            rules.append(zero_pb2.PlacementRule(tablet_glob=glob, pin_group=draw(hs.integers(1, ngroups))))
        else:
            c = draw(hs.sampled_from(ZONES))
            rules.append(zero_pb2.PlacementRule(tablet_glob=glob, constraints=[("!" if draw(hs.booleans()) else "")
                                                                                 + f"zone={c}"]))
    draining = frozenset(draw(hs.sets(hs.integers(1, ngroups), max_size=2)))
    live = draw(hs.sets(hs.integers(1, ngroups), min_size=1))
    skipped = draw(hs.sets(hs.sampled_from([f"t{k}" for k in range(30)]), max_size=3))
    return st, Placement(Rules(zero_pb2.PlacementPolicy(rules=rules)), draining), live, skipped


def _apply(st: zero_pb2.MembershipState, moves: list) -> zero_pb2.MembershipState:  # type: ignore[type-arg]
    out = zero_pb2.MembershipState()
    out.CopyFrom(st)
    for m in moves:
        t = zero_pb2.Tablet()
        t.CopyFrom(out.groups[m.src_group].tablets[m.predicate])
        del out.groups[m.src_group].tablets[m.predicate]
        t.group_id = m.dst_group
        out.groups[m.dst_group].tablets[m.predicate].CopyFrom(t)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_planner_obeys_rules_pins_is_deterministic_and_converges(world) -> None:  # type: ignore[no-untyped-def]
    st, placement, live, skipped = world
    skip = skipped.__contains__
    rnd = plan_round(st, placement, skip=skip, groups=live)
    again = plan_round(st, placement, skip=skip, groups=live)
    assert [(m, m.reason, m.fix) for m in rnd.moves] == [(m, m.reason, m.fix) for m in again.moves]
    assert rnd.blocked == again.blocked
    assert len({m.predicate for m in rnd.moves}) == len(rnd.moves)
    for m in rnd.moves:
        tablet = st.groups[m.src_group].tablets[m.predicate]
        rule = placement.rules.rule_for(m.predicate)
        dst = st.groups[m.dst_group]
        assert m.dst_group in live and any(not x.learner for x in dst.members.values())
        assert rule is None or rule.group_ok(m.dst_group, dst.members.values()), (m, str(rule))
        assert m.dst_group not in placement.draining or (rule is not None and rule.pin_group == m.dst_group)
        assert not (rule is not None and rule.pin_group == m.src_group), f"pinned {m.predicate} moved"
        assert not tablet.read_only and m.predicate not in skipped
        assert m.src_group in live or not m.fix  # a copy needs a live source
    after = _apply(st, rnd.moves)
    assert plan_round(after, placement, skip=skip, groups=live).moves == []


def test_load_counts_reads_and_writes_when_reported() -> None:
    st = zero_pb2.MembershipState()
    for gid in (1, 2):
        st.groups[gid].members[gid].CopyFrom(zero_pb2.Member(id=gid, group_id=gid, addr=f"n{gid}:1"))
    # Equal bytes, but group 1 serves all the reads: the hot tablet's neighbour moves
    # (the hot one alone weighs more than half the difference).
    for name, gid, size, reads in (("hot", 1, 100, 900.0), ("warm", 1, 100, 100.0), ("c1", 2, 100, 0.0),
                                   ("c2", 2, 100, 0.0)):
        st.groups[gid].tablets[name].CopyFrom(zero_pb2.Tablet(predicate=name, group_id=gid, size_bytes=size,
                                                              read_rate=reads))
    moves = plan_round(st).moves
    assert [(m.predicate, m.dst_group) for m in moves] == [("warm", 2)]
    assert "to even out the load" in moves[0].reason
    sizes_only = zero_pb2.MembershipState()
    sizes_only.CopyFrom(st)
    for g in sizes_only.groups.values():
        for t in g.tablets.values():
            t.read_rate = 0.0
    assert plan_round(sizes_only).moves == []  # equal bytes: balanced
