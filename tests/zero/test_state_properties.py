"""Property tests: random proposal sequences against the rules zero/state/ promises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from zero.errors import ZeroError
from zero.pb import state_pb2, zero_pb2
from zero.state.machine import ZeroState
from zero.state.tables import RoomIndex

P = state_pb2.Proposal
ADDRS = [f"n{i}:7080" for i in range(6)]
NAMES = ["a", "b", "c", "d"]
groups = hs.sampled_from([0, 1, 1, 2, 2, 3, 4])
member_ids = hs.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 9])
names = hs.sampled_from(NAMES + ["a", "b"])
move_dst = hs.sampled_from([0, 0, 0, 1, 2, 3])

changes = hs.one_of(
    hs.builds(lambda a, i, g, learner, r: P(connect=state_pb2.ConnectMember(
        id=i, addr=a, group_id=g, learner=learner, replicas=r)),
        hs.sampled_from(ADDRS), member_ids, groups, hs.booleans(), hs.integers(1, 3)),
    hs.builds(lambda i, g: P(remove_member=state_pb2.RemoveMember(node_id=i, group_id=g)), member_ids, groups),
    hs.builds(lambda pairs: P(claim_tablets=state_pb2.ClaimTablets(
        tablets=[zero_pb2.Tablet(predicate=n, group_id=g) for n, g in pairs])),
        hs.lists(hs.tuples(names, groups), min_size=1, max_size=3)),
    hs.builds(lambda n, g: P(force_tablet=state_pb2.ForceTablet(predicate=n, group_id=g)), names, groups),
    hs.builds(lambda g, s: P(tablet_sizes=zero_pb2.TabletSizes(group_id=g, sizes=s)),
              groups, hs.dictionaries(names, hs.integers(-1, 1000), max_size=3)),
    hs.builds(lambda n, g, ts: P(start_move=state_pb2.StartMove(predicate=n, dst_group=g, move_ts=ts)),
              names, move_dst, hs.sampled_from([0, 1, 50, 100, 101])),
    hs.builds(lambda i: P(commit_move=state_pb2.CommitMove(move_id=i)), hs.integers(0, 3)),
    hs.builds(lambda i: P(abort_move=state_pb2.AbortMove(move_id=i)), hs.integers(0, 3)),
    hs.builds(lambda k, c: P(lease_ids=state_pb2.LeaseIds(kind=k, count=c)),
              hs.sampled_from([zero_pb2.UID, zero_pb2.TIMESTAMP]),
              hs.one_of(hs.integers(0, 20), hs.just(1 << 32), hs.just((1 << 32) + 1))),
    hs.builds(lambda i, a: P(add_zero=state_pb2.AddZero(raft_id=i, addr=a)),
              hs.integers(0, 4), hs.sampled_from(ADDRS + ["z1:5080", "z2:5080"])),
    hs.builds(lambda i: P(remove_zero=state_pb2.RemoveZero(raft_id=i)), hs.integers(0, 4)),
    hs.builds(lambda c: P(set_cluster_id=state_pb2.SetClusterId(cluster_id=c)), hs.sampled_from(["", "x", "y"])),
    hs.builds(lambda e: P(set_rebalance=state_pb2.SetRebalanceEnabled(enabled=e)), hs.booleans()),
)


# Moves need a start, then a commit or abort while it is active: weigh them up.
move_changes = hs.one_of(
    hs.builds(lambda n, g: P(start_move=state_pb2.StartMove(predicate=n, dst_group=g, move_ts=50)),
              hs.sampled_from(["a", "b"]), hs.just(0)),
    hs.builds(lambda: P(commit_move=state_pb2.CommitMove(move_id=0))),
    hs.builds(lambda: P(abort_move=state_pb2.AbortMove(move_id=0))),
)


@hs.composite
def proposals(draw: hs.DrawFn) -> P:
    p: P = draw(hs.one_of(changes, move_changes))
    p.key = draw(hs.sampled_from(["", "", "", "", "", "", "k1", "k2"]))
    return p


# Every sequence starts from a small populated cluster so most random proposals can succeed.
SETUP = [
    P(connect=state_pb2.ConnectMember(addr="n0:7080", replicas=1)),
    P(connect=state_pb2.ConnectMember(addr="n1:7080", replicas=1)),
    P(add_zero=state_pb2.AddZero(raft_id=1, addr="z1:5080")),
    P(add_zero=state_pb2.AddZero(raft_id=2, addr="z2:5080")),
    P(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.TIMESTAMP, count=100)),
    P(claim_tablets=state_pb2.ClaimTablets(tablets=[zero_pb2.Tablet(predicate="a", group_id=1),
                                                    zero_pb2.Tablet(predicate="b", group_id=2)])),
]


def resolve(s: ZeroState, p: P) -> P:
    """Fill in what a real proposer reads from the state, so moves happen often: a commit
    or abort with move id 0 names the active move; a start with destination 0 names the
    other of groups 1 and 2; a removal of id 0 names the newest member or zero."""
    which = p.WhichOneof("change")
    active = s.active_move()
    out = P()
    out.CopyFrom(p)
    if which in ("commit_move", "abort_move") and getattr(p, which).move_id == 0 and active:
        getattr(out, which).move_id = active.move_id
    if which == "remove_member" and p.remove_member.node_id == 0:
        members = [(mid, gid) for gid, g in s.state_copy().groups.items() for mid in g.members]
        if members:
            out.remove_member.node_id, out.remove_member.group_id = max(members)
    if which == "remove_zero" and p.remove_zero.raft_id == 0:
        out.remove_zero.raft_id = max(s.state_copy().zeros, default=0)
    if which == "start_move" and p.start_move.dst_group == 0:
        out.start_move.dst_group = 1 if s.group_of(p.start_move.predicate) == 2 else 2
    return out


def owners(s: zero_pb2.MembershipState) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for gid, g in s.groups.items():
        for name in g.tablets:
            out.setdefault(name, []).append(gid)
    return out


def check_room_index(s: ZeroState) -> None:
    """The derived index of groups by voter count (zero/state/tables.py RoomIndex) says
    what a full scan of the groups says, for every ``replicas`` a proposer may send."""
    room = s._t.room  # the derived index itself: no public reader exposes it
    groups = s.groups
    voters = {gid: sum(not m.learner for m in g.members.values()) for gid, g in groups.items()}
    assert room.count == voters
    assert room.top == max(groups, default=0)
    assert room.live == {n: c for n in set(voters.values()) if (c := list(voters.values()).count(n))}
    for n, heap in room.buckets.items():
        assert {g for g in heap if voters[g] == n} == {g for g, v in voters.items() if v == n}
        assert len(heap) <= 2 * room.live[n] + room.SLACK
    for replicas in range(1, 6):
        assert room.first_with_room(replicas) == min((g for g in sorted(groups) if voters[g] < replicas),
                                                     default=None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(proposals(), max_size=60))
def test_random_sequences_keep_the_invariants(random_seq: list[P]) -> None:
    seq = SETUP + random_seq
    s = ZeroState()
    prev = s.state_copy()
    seen_owner: dict[str, int] = {}
    uid_ranges: list[tuple[int, int]] = []
    ts_ranges: list[tuple[int, int]] = []
    ids_ever: dict[int, str] = {}
    applied_seq: list[P] = []
    for index, p in enumerate(seq, start=1):
        p = resolve(s, p)
        applied_seq.append(p)
        before = s.snapshot()
        try:
            applied = s.apply(index, p)
        except ZeroError:
            assert s.snapshot() == before, "a refused proposal changed the state"
            continue
        cur = s.state_copy()
        # Never two owners; ownership changes only through a claim, a forced
        # reassignment or a committed move.
        for name, gids in owners(cur).items():
            assert len(gids) == 1, f"tablet {name} owned by {gids}"
            if name in seen_owner and seen_owner[name] != gids[0]:
                assert p.WhichOneof("change") in ("commit_move", "force_tablet")
            seen_owner[name] = gids[0]
        assert set(seen_owner) == set(owners(cur))  # tablets are never dropped
        # Monotonic counters.
        assert cur.version >= prev.version and cur.max_uid >= prev.max_uid
        assert cur.max_txn_ts >= prev.max_txn_ts
        if applied.duplicate:
            assert s.snapshot() == before
        elif applied.ids is not None:
            ranges = uid_ranges if p.lease_ids.kind == zero_pb2.UID else ts_ranges
            ranges.append((applied.ids.start_id, applied.ids.end_id))
        if not applied.delta.empty:
            assert cur.version == index
        # Member ids are never reused for another address lineage.
        for g in cur.groups.values():
            for mid, mem in g.members.items():
                ids_ever.setdefault(mid, mem.addr)
        removed = {m.id for m in cur.removed if m.group_id}
        assert not removed & {mid for g in cur.groups.values() for mid in g.members}
        # A tablet is read-only exactly while a move of it is in progress.
        active = s.active_move()
        for g in cur.groups.values():
            for name, t in g.tablets.items():
                assert t.read_only == (active is not None and active.predicate == name)
        check_room_index(s)
        prev = cur
    for ranges in (uid_ranges, ts_ranges):
        for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
            assert a0 <= a1 < b0 <= b1, "leased ranges overlap or go backwards"
    # Deterministic: replaying the same proposals gives the same bytes; restore round-trips.
    again = ZeroState()
    for index, p in enumerate(applied_seq, start=1):
        try:
            again.apply(index, p)
        except ZeroError:
            pass
    assert again.snapshot() == s.snapshot()
    restored = ZeroState.restore(s.snapshot())
    assert restored.snapshot() == s.snapshot()
    check_room_index(restored)  # reindex() rebuilds what the handlers kept in step


# Churn of data nodes: many addresses, every --replicas a proposer may send, explicit
# groups and learners, removals of any member. Each step is (connect?, replicas, group,
# learner, k): a connect, or the removal of the k-th present member (mod their number).
churn = hs.lists(hs.tuples(hs.sampled_from([True, False]), hs.integers(1, 4),
                           hs.sampled_from([0, 0, 0, 0, 1, 2, 5, 9]), hs.booleans(), hs.integers(0, 50)),
                 max_size=150)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(churn)
def test_room_index_equals_a_full_scan_under_churn(steps: list[tuple[bool, int, int, bool, int]]) -> None:
    saved = RoomIndex.SLACK
    RoomIndex.SLACK = 0  # compact the buckets' stale entries as early as the rule allows
    try:
        s = ZeroState()
        for index, (join, replicas, gid, learner, k) in enumerate(steps, start=1):
            if join:
                p = P(connect=state_pb2.ConnectMember(addr=f"n{index}:7080", replicas=replicas,
                                                      group_id=gid, learner=learner))
            else:
                present = sorted((mid, g) for g, group in s.groups.items() for mid in group.members)
                if not present:
                    continue
                mid, g = present[k % len(present)]
                p = P(remove_member=state_pb2.RemoveMember(node_id=mid, group_id=g))
            try:
                s.apply(index, p)
            except ZeroError:
                pass
            check_room_index(s)
        check_room_index(ZeroState.restore(s.snapshot()))
    finally:
        RoomIndex.SLACK = saved


def test_room_index_compacts_stale_entries() -> None:
    """Groups leaving a bucket leave stale heap entries behind; the bucket is rebuilt
    before they outnumber its live groups twice over (plus SLACK), and the answer holds."""
    room = RoomIndex()
    for gid in range(1, 201):
        room.set(gid, 1)
    for gid in range(1, 200):  # all but group 200 fill up
        room.set(gid, 2)
        assert len(room.buckets[1]) <= 2 * room.live[1] + room.SLACK
        assert room.first_with_room(2) == gid + 1
    assert room.live == {1: 1, 2: 199} and room.buckets[1] == [200]
    room.set(7, 0)
    assert room.first_with_room(1) == 7 and room.first_with_room(2) == 7 and room.first_with_room(3) == 1
    assert room.top == 200
