"""Placement in the replicated state (zero/state/placement.py, rules.py, spread.py):
labels and spreading, rules obeyed by claims, forced assignments and moves, group sizes
and drains, DeleteTablet and BumpLease, and the version gate."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import versions
from zero.state.machine import ZeroState
from zero.state.rules import Rules

P = state_pb2.Proposal


class Log:
    """A state and the next index: apply proposals one after another."""

    def __init__(self) -> None:
        self.s = ZeroState()
        self.index = 0

    def __call__(self, p: P) -> state_pb2.ProposalResult:
        self.index += 1
        return self.s.apply(self.index, p).result

    def join(self, addr: str, replicas: int = 3, group: int = 0, **labels: str) -> zero_pb2.Member:
        return self(P(connect=state_pb2.ConnectMember(addr=addr, replicas=replicas, group_id=group,
                                                      labels=labels))).member

    def policy(self, *rules: zero_pb2.PlacementRule, spread: str = "", version: int = 0) -> zero_pb2.PlacementPolicy:
        return self(P(set_placement=state_pb2.SetPlacement(policy=zero_pb2.PlacementPolicy(
            rules=rules, spread_label=spread, version=version)))).policy

    def claim(self, name: str, gid: int) -> int:
        return self(P(claim_tablets=state_pb2.ClaimTablets(
            tablets=[zero_pb2.Tablet(predicate=name, group_id=gid)]))).tablets.tablets[0].group_id


def rule(glob: str, pin: int = 0, *constraints: str) -> zero_pb2.PlacementRule:
    return zero_pb2.PlacementRule(tablet_glob=glob, pin_group=pin, constraints=constraints)


def three_zones(log: Log, nodes: int = 9) -> None:
    for i in range(nodes):
        log.join(f"n{i}:1", zone="abc"[i // (nodes // 3)])  # a,a,a,b,b,b,c,c,c: worst order


def test_members_spread_over_zones_even_when_zones_connect_one_after_another() -> None:
    log = Log()
    three_zones(log)
    groups = log.s.groups
    assert sorted(groups) == [1, 2, 3]
    for g in groups.values():
        assert sorted(m.labels["zone"] for m in g.members.values()) == ["a", "b", "c"]


def test_spreading_off_or_on_another_label_and_unlabelled_members() -> None:
    log = Log()
    log.policy(spread="-")
    three_zones(log)
    assert [sorted(m.labels["zone"] for m in g.members.values()) for g in log.s.groups.values()] == [
        ["a", "a", "a"], ["b", "b", "b"], ["c", "c", "c"]]
    log = Log()
    log.policy(spread="rack")
    for i in range(4):
        log.join(f"n{i}:1", rack="r1")
    assert [len(g.members) for g in log.s.groups.values()] == [1, 1, 1, 1]
    log.join("plain:1")  # no rack: the lowest group with room
    assert len(log.s.groups[1].members) == 2


def test_labels_are_validated_and_replaced_on_reconnect() -> None:
    log = Log()
    with pytest.raises(InvalidArgumentError, match="label key"):
        log.join("n1:1", **{"bad key": "x"})
    m = log.join("n1:1", zone="a")
    got = log(P(connect=state_pb2.ConnectMember(id=m.id, addr="n1:1", replicas=3, labels={"zone": "b"}))).member
    assert dict(got.labels) == {"zone": "b"}


def test_drained_group_takes_no_members_and_sizes_fill_groups() -> None:
    log = Log()
    three_zones(log)
    log(P(drain_group=state_pb2.DrainGroup(group_id=1)))
    log(P(set_group_replicas=state_pb2.SetGroupReplicas(group_id=2, replicas=5)))
    assert log.join("x:1", zone="d").group_id == 2  # 1 is draining, 2 has room for 5
    with pytest.raises(FailedPreconditionError, match="draining"):
        log.join("y:1", group=1, zone="d")
    log(P(drain_group=state_pb2.DrainGroup(group_id=1, undrain=True)))
    assert not log.s.draining(1)
    for bad in (0, 8):
        with pytest.raises(InvalidArgumentError, match="between 1 and 7"):
            log(P(set_group_replicas=state_pb2.SetGroupReplicas(group_id=2, replicas=bad)))
    with pytest.raises(NotFoundError):
        log(P(drain_group=state_pb2.DrainGroup(group_id=9)))


def test_policy_is_checked_and_compare_and_set() -> None:
    log = Log()
    three_zones(log)
    before = log.s.snapshot()
    for bad, why in [(rule("x*", 7), "group 7 does not exist"), (rule("x*", 0, "zone=a", "zone=b"), "contradict"),
                     (rule("x*", 0, "zone=a", "!zone=a"), "contradict"), (rule("x*", 0, "zone"), "KEY=VALUE"),
                     (rule("x*", 1, "zone=a"), "one or the other"), (rule(""), "empty")]:
        with pytest.raises(InvalidArgumentError, match=why):
            log.policy(bad)
    assert log.s.snapshot() == before
    p = log.policy(rule("x*", 0, "zone=z"))  # no group meets it: accepted
    assert p.version == log.index
    with pytest.raises(FailedPreconditionError, match="changed meanwhile"):
        log.policy(rule("y*", 1), version=p.version - 1)
    assert log.policy(rule("y*", 1), version=p.version).rules[0].tablet_glob == "y*"


def test_claims_are_placed_where_the_rules_allow() -> None:
    log = Log()
    for i in range(6):
        log.join(f"n{i}:1", replicas=1, zone="ab"[i % 2], disk="hdd" if i == 4 else "ssd")
    # groups 1..6 of one member each: zones a b a b a b; group 5 has an hdd
    log.policy(rule("pinned.*", 3), rule("ssd.*", 0, "zone=a", "!disk=hdd"), rule("free.*"),
               rule("*", 0, "zone=b"))
    assert log.claim("pinned.x", 1) == 3
    assert log.claim("ssd.x", 5) == 1  # 5 is zone a but hdd: the lowest allowed group
    assert log.claim("ssd.y", 3) == 3
    assert log.claim("free.x", 5) == 5
    assert log.claim("other", 1) == 2
    log(P(drain_group=state_pb2.DrainGroup(group_id=2)))
    assert log.claim("other2", 2) == 4  # draining groups take no new tablets
    with pytest.raises(FailedPreconditionError, match=r"rule 1 \('pinned\.\*' pins to group 3\)"):
        log(P(force_tablet=state_pb2.ForceTablet(predicate="pinned.x", group_id=1)))
    log(P(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.TIMESTAMP, count=10)))
    with pytest.raises(FailedPreconditionError, match="rule 2"):
        log(P(start_move=state_pb2.StartMove(predicate="ssd.x", dst_group=5, move_ts=1)))
    with pytest.raises(FailedPreconditionError, match="draining"):
        log(P(start_move=state_pb2.StartMove(predicate="free.x", dst_group=2, move_ts=1)))
    log(P(start_move=state_pb2.StartMove(predicate="free.x", dst_group=6, move_ts=1)))


def test_first_matching_rule_applies_and_matching_is_indexed_by_prefix() -> None:
    rules = Rules(zero_pb2.PlacementPolicy(rules=[rule("a.b*", 1), rule("a.*", 2), rule("*x", 3), rule("a.bc", 4)]))
    assert [r.index if (r := rules.rule_for(n)) else None for n in ["a.bc", "a.c", "zx", "a.x", "q", "a.b"]] == [
        1, 2, 3, 2, None, 1]


def test_delete_tablet_and_bump_lease() -> None:
    log = Log()
    log.join("n1:1", replicas=1)
    log.join("n2:1", replicas=1)
    log.claim("t", 1)
    log(P(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.TIMESTAMP, count=10)))
    move = log(P(start_move=state_pb2.StartMove(predicate="t", dst_group=2, move_ts=5))).move
    with pytest.raises(FailedPreconditionError, match="being moved"):
        log(P(delete_tablet=state_pb2.DeleteTablet(predicate="t")))
    log(P(abort_move=state_pb2.AbortMove(move_id=move.move_id)))
    deleted = log(P(delete_tablet=state_pb2.DeleteTablet(predicate="t"))).tablets.tablets[0]
    assert deleted.group_id == 1 and log.s.tablet("t") is None
    with pytest.raises(NotFoundError):
        log(P(delete_tablet=state_pb2.DeleteTablet(predicate="t")))
    bump = log(P(bump_lease=zero_pb2.BumpLeaseRequest(kind=zero_pb2.UID, floor=1000)))
    assert (bump.ids.start_id, bump.ids.end_id, log.s.max_uid) == (1, 1000, 1000)
    lower = log(P(bump_lease=zero_pb2.BumpLeaseRequest(kind=zero_pb2.UID, floor=10)))
    assert (lower.ids.start_id, lower.ids.end_id, log.s.max_uid) == (0, 1000, 1000)
    with pytest.raises(InvalidArgumentError, match="2\\^63"):
        log(P(bump_lease=zero_pb2.BumpLeaseRequest(kind=zero_pb2.TIMESTAMP, floor=1 << 63)))
    assert log.s.max_txn_ts == 10


def test_placement_survives_a_snapshot_and_the_version_gate_holds_it_back() -> None:
    log = Log()
    three_zones(log)
    log.policy(rule("x*", 2), spread="zone")
    log(P(drain_group=state_pb2.DrainGroup(group_id=3)))
    restored = ZeroState.restore(log.s.snapshot())
    assert restored.snapshot() == log.s.snapshot()
    assert restored.rules.rule_for("xy") is not None and restored.draining(3)
    assert versions.required_version(P(drain_group=state_pb2.DrainGroup(group_id=1))) == 3
    assert versions.required_version(P(connect=state_pb2.ConnectMember(addr="a:1", labels={"zone": "a"}))) == 3
    assert versions.required_version(P(connect=state_pb2.ConnectMember(addr="a:1"))) == 1
    with pytest.raises(FailedPreconditionError, match="connect with labels needs cluster version 3"):
        versions.check_proposal(P(connect=state_pb2.ConnectMember(addr="a:1", labels={"zone": "a"})), 2)


# ---- the spread index against a full scan ----

ZONES = ["a", "b", "c", None]
ops = hs.one_of(
    hs.tuples(hs.just("join"), hs.sampled_from(ZONES), hs.integers(1, 3), hs.sampled_from([0, 0, 0, 1, 2])),
    hs.tuples(hs.just("remove"), hs.integers(1, 30)),
    hs.tuples(hs.just("drain"), hs.integers(1, 6), hs.booleans()),
    hs.tuples(hs.just("size"), hs.integers(1, 6), hs.integers(1, 4)),
    hs.tuples(hs.just("spread"), hs.sampled_from(["", "-", "rack"])),
)


def scan(s: ZeroState, value: str | None, replicas: int) -> int | None:
    label = s.rules.spread_label
    for gid in sorted(s.groups):
        g = s.groups[gid]
        voters = sum(not m.learner for m in g.members.values())
        if voters >= (s.group_size(gid) or replicas) or s.draining(gid):
            continue
        if value is None or label is None or not any(m.labels.get(label) == value for m in g.members.values()):
            return gid
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(ops, max_size=60))
def test_connect_chooses_what_a_full_scan_of_the_groups_chooses(seq: list[tuple]) -> None:  # type: ignore[type-arg]
    log = Log()
    n = 0
    for op in seq:
        before = log.s  # the same object: read it before applying
        try:
            if op[0] == "join":
                _, zone, replicas, group = op
                labels = {} if zone is None else {"zone": zone, "rack": zone}
                label = before.rules.spread_label
                value = labels.get(label) if label is not None else None
                want = scan(before, value, replicas) if not group else group
                if want is None:
                    want = max(before.groups, default=0) + 1  # a new group
                n += 1
                try:
                    got = log.join(f"n{n}:1", replicas=replicas, group=group, **labels).group_id
                except (FailedPreconditionError, NotFoundError):
                    continue
                assert got == want
            elif op[0] == "remove":
                m = log.s.member(op[1])
                if m is not None:
                    log(P(remove_member=state_pb2.RemoveMember(node_id=m.id, group_id=m.group_id)))
            elif op[0] == "drain":
                log(P(drain_group=state_pb2.DrainGroup(group_id=op[1], undrain=op[2])))
            elif op[0] == "size":
                log(P(set_group_replicas=state_pb2.SetGroupReplicas(group_id=op[1], replicas=op[2])))
            else:
                log.policy(spread=op[1])
        except (NotFoundError, FailedPreconditionError):
            pass
    restored = ZeroState.restore(log.s.snapshot())
    assert Counter(m.group_id for g in restored.groups.values() for m in g.members.values()) == Counter(
        m.group_id for g in log.s.groups.values() for m in g.members.values())
