"""Unit tests of zero's replicated state machine (zero/state/), without gRPC."""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable

import pytest

from zero.errors import (
    ApplyOrderError,
    CorruptStateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from zero.pb import state_pb2, zero_pb2
from zero.state import dedup, machine
from zero.state.delta import Applied, Delta
from zero.state.leases import MAX_LEASE
from zero.state.machine import ZeroState
from zero.state.moves import MOVE_HISTORY
from zero.state.tables import UINT64_MAX

P = state_pb2.Proposal


def connect(addr: str, id: int = 0, group: int = 0, learner: bool = False, replicas: int = 1, key: str = "") -> P:
    return P(key=key, connect=state_pb2.ConnectMember(id=id, addr=addr, group_id=group, learner=learner,
                                                      replicas=replicas))


def remove(node: int, group: int, key: str = "") -> P:
    return P(key=key, remove_member=state_pb2.RemoveMember(node_id=node, group_id=group))


def claim(*pairs: tuple[str, int], key: str = "") -> P:
    return P(key=key, claim_tablets=state_pb2.ClaimTablets(
        tablets=[zero_pb2.Tablet(predicate=n, group_id=g) for n, g in pairs]))


def force(name: str, group: int) -> P:
    return P(force_tablet=state_pb2.ForceTablet(predicate=name, group_id=group))


def sizes(group: int, **s: int) -> P:
    return P(tablet_sizes=zero_pb2.TabletSizes(group_id=group, sizes=s))


def start(name: str, dst: int, ts: int) -> P:
    return P(start_move=state_pb2.StartMove(predicate=name, dst_group=dst, move_ts=ts))


def commit(move_id: int, key: str = "") -> P:
    return P(key=key, commit_move=state_pb2.CommitMove(move_id=move_id))


def abort(move_id: int) -> P:
    return P(abort_move=state_pb2.AbortMove(move_id=move_id, reason="test"))


def lease(kind: int, count: int, key: str = "") -> P:
    return P(key=key, lease_ids=state_pb2.LeaseIds(kind=kind, count=count))  # type: ignore[arg-type]


def add_zero(addr: str, raft_id: int = 0) -> P:
    return P(add_zero=state_pb2.AddZero(raft_id=raft_id, addr=addr))


def remove_zero(raft_id: int) -> P:
    return P(remove_zero=state_pb2.RemoveZero(raft_id=raft_id))


class Machine:
    """A ZeroState with an index counter, like the Ready loop that drives it."""

    def __init__(self) -> None:
        self.s = ZeroState()
        self.index = itertools.count(1)

    def apply(self, p: P) -> Applied:
        return self.s.apply(next(self.index), p)

    def refused(self, p: P, err: type[Exception], match: str | None = None) -> None:
        """The proposal is refused with ``err`` and changes nothing."""
        before = self.s.snapshot()
        with pytest.raises(err, match=match):
            self.apply(p)
        assert self.s.snapshot() == before


def crafted(edit: Callable[[state_pb2.ZeroStateSnapshot], object]) -> ZeroState:
    """A state restored from a hand-edited snapshot of the empty state."""
    snap = state_pb2.ZeroStateSnapshot()
    snap.ParseFromString(ZeroState().snapshot()[8:])
    edit(snap)
    payload = snap.SerializeToString(deterministic=True)
    return ZeroState.restore(struct.pack(">4sI", b"ZST\x01", zlib.crc32(payload)) + payload)


@pytest.fixture
def m() -> Machine:
    return Machine()


def two_groups(m: Machine) -> None:
    """Members 1 (group 1) and 2 (group 2); tablet 'a' on group 1; timestamps leased."""
    assert m.apply(connect("n1:1")).member.group_id == 1  # type: ignore[union-attr]
    assert m.apply(connect("n2:1")).member.group_id == 2  # type: ignore[union-attr]
    m.apply(claim(("a", 1)))
    m.apply(lease(zero_pb2.TIMESTAMP, 100))


# ---- Connect ----

def test_connect_assigns_never_reused_ids_and_fills_groups(m: Machine) -> None:
    ids = [m.apply(connect(f"n{i}:7080", replicas=3)).member for i in range(7)]
    assert [x.id for x in ids] == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[union-attr]
    assert [x.group_id for x in ids] == [1, 1, 1, 2, 2, 2, 3]  # type: ignore[union-attr]
    m.apply(remove(7, 3))
    assert m.apply(connect("n7:7080", replicas=3)).member.id == 8  # type: ignore[union-attr]
    # The refilled group 3 gets the newcomer: first group with fewer than replicas voters.
    assert m.s.member(8).group_id == 3  # type: ignore[union-attr]


def test_connect_same_address_is_idempotent(m: Machine) -> None:
    first = m.apply(connect("n1:7080"))
    version = m.s.version
    again = m.apply(connect("n1:7080", group=5))
    assert again.member == first.member
    assert again.delta.empty and m.s.version == version


def test_connect_learners_do_not_count_towards_replicas(m: Machine) -> None:
    m.apply(connect("v1:1", replicas=2))
    learner = m.apply(connect("l1:1", group=1, learner=True, replicas=2)).member
    assert learner.learner and learner.group_id == 1  # type: ignore[union-attr]
    assert m.apply(connect("v2:1", replicas=2)).member.group_id == 1  # type: ignore[union-attr]
    assert m.apply(connect("v3:1", replicas=2)).member.group_id == 2  # type: ignore[union-attr]


def test_connect_requested_group(m: Machine) -> None:
    assert m.apply(connect("a:1", group=7)).member.group_id == 7  # type: ignore[union-attr]
    assert 7 in m.s.state_copy().groups
    m.refused(connect("b:1", group=7), FailedPreconditionError, "already has 1 voting")
    # Auto-assignment never reuses a group id below the highest one.
    assert m.apply(connect("c:1")).member.group_id == 8  # type: ignore[union-attr]


def test_connect_learner_rules(m: Machine) -> None:
    m.refused(connect("l:1", learner=True), InvalidArgumentError, "must name the group")
    m.refused(connect("l:1", group=3, learner=True), NotFoundError, "group 3")


def test_connect_with_id(m: Machine) -> None:
    m.apply(connect("n1:1"))
    m.apply(connect("n2:1"))
    assert m.apply(connect("n1:1", id=1)).member.id == 1  # type: ignore[union-attr]
    m.refused(connect("n1:1", id=2), FailedPreconditionError, "held by member 1")
    m.refused(connect("n9:1", id=99), NotFoundError, "unknown")
    m.refused(connect("n1:1", id=1, group=2), FailedPreconditionError, "belongs to group 1")
    # A known member may come back on a new address.
    moved = m.apply(connect("n1b:1", id=1))
    assert moved.member.addr == "n1b:1" and moved.delta.members == {1}  # type: ignore[union-attr]
    assert m.s.member_by_addr("n1:1") is None
    assert m.apply(connect("n1:1")).member.id == 3  # type: ignore[union-attr]


def test_connect_removed_id_is_refused(m: Machine) -> None:
    m.apply(connect("n1:1"))
    m.apply(connect("n2:1"))
    m.apply(remove(2, 2))
    m.refused(connect("n2:1", id=2), FailedPreconditionError, "removed")
    # The address itself is free again, for a new member with a new id.
    assert m.apply(connect("n2:1")).member.id == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("addr", ["", "host", ":80", "h:0", "h:65536", "h:x", "bad host:1", "h:-1"])
def test_connect_bad_address(m: Machine, addr: str) -> None:
    m.refused(connect(addr), InvalidArgumentError)


def test_connect_address_of_a_zero_is_refused(m: Machine) -> None:
    m.apply(add_zero("z1:5080", 1))
    m.refused(connect("z1:5080"), FailedPreconditionError, "zero 1")


def test_connect_replicas_zero_is_invalid(m: Machine) -> None:
    m.refused(connect("a:1", replicas=0), InvalidArgumentError, "replicas")


# ---- RemoveNode ----

def test_remove_member(m: Machine) -> None:
    two_groups(m)
    m.apply(connect("n3:1", group=1, learner=True))
    m.refused(remove(1, 1), FailedPreconditionError, "last voting member of group 1")
    m.refused(remove(1, 2), NotFoundError, "is in group 1")
    m.refused(remove(42, 1), NotFoundError, "unknown")
    m.refused(remove(1, 9), NotFoundError, "group 9")
    m.refused(remove(1, 0), InvalidArgumentError)
    removed = m.apply(remove(3, 1))  # the learner may go
    assert removed.delta.removed_members == {3}
    assert m.apply(remove(2, 2)).member.id == 2  # type: ignore[union-attr]  # group 2 owns nothing
    m.refused(remove(2, 2), FailedPreconditionError, "already removed")
    state = m.s.state_copy()
    assert [(x.id, x.group_id) for x in state.removed] == [(3, 1), (2, 2)]
    assert 2 in state.groups and not state.groups[2].members  # groups are kept


def test_remove_last_voter_of_move_destination_refused(m: Machine) -> None:
    two_groups(m)
    m.apply(start("a", 2, 50))
    m.refused(remove(2, 2), FailedPreconditionError, "destination of move")


# ---- tablets ----

def test_claim_first_wins_and_lookup_changes_nothing(m: Machine) -> None:
    two_groups(m)
    r = m.apply(claim(("a", 2), ("b", 2), ("b", 1), ("c", 0)))
    assert [(t.predicate, t.group_id) for t in r.tablets] == [("a", 1), ("b", 2), ("b", 2), ("c", 0)]
    assert r.delta.tablets == {"b"}
    assert m.s.group_of("b") == 2 and m.s.group_of("c") == 0
    assert m.s.tablet("c") is None
    before = m.s.snapshot()
    assert m.apply(claim(("zz", 0))).tablets[0].group_id == 0
    assert m.s.snapshot() == before


def test_claim_unknown_group_refuses_whole_batch(m: Machine) -> None:
    two_groups(m)
    m.refused(claim(("x", 1), ("y", 9)), NotFoundError, "group 9")
    # A name already owned is answered with its owner, whatever group the request names.
    assert m.apply(claim(("a", 9))).tablets[0].group_id == 1


@pytest.mark.parametrize("name", ["", "x" * 1025, "é" * 513])
def test_claim_bad_names(m: Machine, name: str) -> None:
    two_groups(m)
    m.refused(claim((name, 1)), InvalidArgumentError)


def test_claim_name_of_exactly_1kib_is_fine(m: Machine) -> None:
    two_groups(m)
    assert m.apply(claim(("é" * 512, 1))).tablets[0].group_id == 1


def test_force_reassignment(m: Machine) -> None:
    two_groups(m)
    m.apply(sizes(1, a=10))
    r = m.apply(force("a", 2))
    assert r.tablets[0].group_id == 2 and r.tablets[0].size_bytes == 10
    assert m.s.group_of("a") == 2 and "a" not in m.s.state_copy().groups[1].tablets
    assert m.apply(force("new", 1)).tablets[0].group_id == 1
    m.refused(force("a", 5), NotFoundError)
    m.refused(force("a", 0), InvalidArgumentError)
    m.apply(start("a", 1, 7))
    m.refused(force("a", 1), FailedPreconditionError, "being moved")


def test_tablet_sizes(m: Machine) -> None:
    two_groups(m)
    r = m.apply(sizes(1, a=100, b=5))  # b is not group 1's: ignored
    assert r.delta.tablets == {"a"}
    assert m.s.tablet("a").size_bytes == 100  # type: ignore[union-attr]
    assert m.s.tablet("b") is None
    m.refused(sizes(1, a=-1), InvalidArgumentError, "negative")
    m.refused(sizes(9, a=1), NotFoundError)
    version = m.s.version
    assert m.apply(sizes(1, a=100)).delta.empty and m.s.version == version


# ---- moves ----

def test_move_commit(m: Machine) -> None:
    two_groups(m)
    started = m.apply(start("a", 2, 50)).move
    assert started is not None and started.move_id == 1 and started.phase == state_pb2.MOVE_COPYING
    t = m.s.tablet("a")
    assert t is not None and t.read_only and t.move_ts == 50 and t.group_id == 1
    m.refused(start("a", 2, 60), FailedPreconditionError, "in progress")
    m.refused(commit(7), FailedPreconditionError, "stale")
    done = m.apply(commit(1)).move
    assert done is not None and done.phase == state_pb2.MOVE_COMMITTED
    t = m.s.tablet("a")
    assert t is not None and t.group_id == 2 and not t.read_only and t.move_ts == 50
    assert m.s.active_move() is None
    m.refused(commit(1), FailedPreconditionError, "already committed")
    m.refused(abort(1), FailedPreconditionError, "stale")


def test_move_abort(m: Machine) -> None:
    two_groups(m)
    m.apply(start("a", 2, 50))
    m.apply(abort(1))
    t = m.s.tablet("a")
    assert t is not None and t.group_id == 1 and not t.read_only and t.move_ts == 0
    assert m.s.moves()[0].phase == state_pb2.MOVE_ABORTED
    # A new move gets a new id; the aborted one is stale.
    assert m.apply(start("a", 2, 60)).move.move_id == 2  # type: ignore[union-attr]
    m.refused(commit(1), FailedPreconditionError, "already aborted")


def test_move_refusals(m: Machine) -> None:
    two_groups(m)
    m.refused(start("zz", 2, 5), NotFoundError, "not served")
    m.refused(start("a", 9, 5), NotFoundError, "group 9")
    m.refused(start("a", 1, 5), FailedPreconditionError, "already served")
    m.refused(start("a", 2, 0), InvalidArgumentError, "leased")
    m.refused(start("a", 2, 101), InvalidArgumentError, "leased")
    m.apply(connect("l:1", group=3 - 1, learner=True))
    m.apply(connect("x:1", group=4))
    m.apply(remove(4, 4))  # group 4 exists but has no voters
    m.refused(start("a", 4, 5), FailedPreconditionError, "no voting")
    m.refused(commit(1), FailedPreconditionError, "no move is in progress")


def test_move_history_is_bounded(m: Machine) -> None:
    two_groups(m)
    for i in range(MOVE_HISTORY + 5):
        mid = m.apply(start("a", 2 if i % 2 == 0 else 1, 50)).move.move_id  # type: ignore[union-attr]
        m.apply(commit(mid))
    moves = m.s.moves()
    assert len(moves) == MOVE_HISTORY and moves[-1].move_id == MOVE_HISTORY + 5


# ---- leases ----

def test_leases_grow_and_never_overlap(m: Machine) -> None:
    a = m.apply(lease(zero_pb2.UID, 10)).ids
    b = m.apply(lease(zero_pb2.UID, 5)).ids
    t = m.apply(lease(zero_pb2.TIMESTAMP, 3)).ids
    assert (a.start_id, a.end_id, b.start_id, b.end_id) == (1, 10, 11, 15)  # type: ignore[union-attr]
    assert (t.start_id, t.end_id) == (1, 3)  # type: ignore[union-attr]
    s = m.s.state_copy()
    assert (s.max_uid, s.max_txn_ts) == (15, 3)


def test_lease_refusals(m: Machine) -> None:
    m.refused(lease(zero_pb2.UID, 0), InvalidArgumentError)
    m.refused(lease(zero_pb2.UID, MAX_LEASE + 1), InvalidArgumentError)
    m.refused(lease(7, 1), InvalidArgumentError, "kind")
    m.s = crafted(lambda snap: setattr(snap.state, "max_uid", UINT64_MAX - 10))
    left = 10
    m.refused(lease(zero_pb2.UID, left + 1), FailedPreconditionError, "overflow")
    assert m.apply(lease(zero_pb2.UID, left)).ids.end_id == UINT64_MAX  # type: ignore[union-attr]
    m.refused(lease(zero_pb2.UID, 1), FailedPreconditionError, "exhausted")


# ---- zeros and settings ----

def test_zeros(m: Machine) -> None:
    assert m.apply(add_zero("z1:5080", 1)).member.id == 1  # type: ignore[union-attr]
    assert m.apply(add_zero("z2:5080")).member.id == 2  # type: ignore[union-attr]
    assert m.apply(add_zero("z2:5080")).delta.empty  # idempotent by address
    assert m.apply(add_zero("z5:5080", 5)).member.id == 5  # type: ignore[union-attr]
    assert m.apply(add_zero("z6:5080")).member.id == 6  # type: ignore[union-attr]
    m.refused(add_zero("z1:5080", 3), FailedPreconditionError, "held by zero 1")
    m.apply(connect("d:1"))
    m.refused(add_zero("d:1"), FailedPreconditionError, "data node")
    m.apply(remove_zero(2))
    m.refused(remove_zero(2), FailedPreconditionError, "already removed")
    m.refused(add_zero("z2:5080", 2), FailedPreconditionError, "removed")
    m.refused(remove_zero(9), NotFoundError)
    for rid in (5, 6):
        m.apply(remove_zero(rid))
    m.refused(remove_zero(1), FailedPreconditionError, "last zero")
    assert m.s.is_removed(2, zero=True) and not m.s.is_removed(2)
    assert m.apply(add_zero("z7:5080")).member.id == 7  # type: ignore[union-attr]


def test_cluster_id_set_once(m: Machine) -> None:
    m.refused(P(set_cluster_id=state_pb2.SetClusterId(cluster_id="")), InvalidArgumentError)
    m.apply(P(set_cluster_id=state_pb2.SetClusterId(cluster_id="c-1")))
    assert m.apply(P(set_cluster_id=state_pb2.SetClusterId(cluster_id="c-1"))).delta.empty
    m.refused(P(set_cluster_id=state_pb2.SetClusterId(cluster_id="c-2")), FailedPreconditionError, "set once")
    assert m.s.cluster_id == "c-1"


def test_rebalance_switch(m: Machine) -> None:
    assert m.s.rebalance_enabled
    m.apply(P(set_rebalance=state_pb2.SetRebalanceEnabled(enabled=False)))
    assert not m.s.rebalance_enabled
    assert not ZeroState.restore(m.s.snapshot()).rebalance_enabled


# ---- apply mechanics: version, dedup, ordering ----

def test_version_is_index_of_last_change(m: Machine) -> None:
    m.apply(connect("a:1"))
    assert m.s.version == 1
    m.apply(claim(("x", 0)))  # a lookup changes nothing
    assert m.s.version == 1
    m.apply(claim(("x", 1)))
    assert m.s.version == 3


def test_dedup_returns_first_result_and_changes_nothing(m: Machine) -> None:
    first = m.apply(lease(zero_pb2.UID, 10, key="k1"))
    snap = m.s.snapshot()
    again = m.apply(lease(zero_pb2.UID, 10, key="k1"))
    assert again.duplicate and again.ids == first.ids and again.delta.empty
    assert m.s.snapshot() == snap
    # The key survives a snapshot: a retry after restart is still recognised.
    restored = ZeroState.restore(snap)
    assert restored.apply(100, lease(zero_pb2.UID, 10, key="k1")).ids == first.ids
    assert m.apply(lease(zero_pb2.UID, 10, key="k2")).ids.start_id == 11  # type: ignore[union-attr]


def test_dedup_of_connect_and_commit(m: Machine) -> None:
    two_groups(m)
    m.apply(start("a", 2, 50))
    assert m.apply(commit(1, key="c")).move.phase == state_pb2.MOVE_COMMITTED  # type: ignore[union-attr]
    assert m.apply(commit(1, key="c")).duplicate  # a retried commit is not "stale"
    a = m.apply(connect("n9:1", key="x")).member
    assert m.apply(connect("n9:1", key="x")).member == a


def test_refused_proposal_is_not_recorded_for_dedup(m: Machine) -> None:
    m.refused(claim(("x", 1), key="k"), NotFoundError)
    m.apply(connect("a:1"))
    assert m.apply(claim(("x", 1), key="k")).tablets[0].group_id == 1


def test_dedup_retention_is_bounded(monkeypatch: pytest.MonkeyPatch, m: Machine) -> None:
    monkeypatch.setattr(dedup, "DEDUP_RETENTION", 3)
    for i in range(5):
        m.apply(lease(zero_pb2.UID, 1, key=f"k{i}"))
    assert m.apply(lease(zero_pb2.UID, 1, key="k4")).duplicate
    assert not m.apply(lease(zero_pb2.UID, 1, key="k0")).duplicate  # forgotten: re-applied


def test_apply_order_and_empty_proposals(m: Machine) -> None:
    m.s.apply(5, connect("a:1"))
    with pytest.raises(ApplyOrderError):
        m.s.apply(5, connect("b:1"))
    with pytest.raises(InvalidArgumentError, match="no change"):
        m.s.apply(6, P(key="k"))
    with pytest.raises(InvalidArgumentError, match="key"):
        m.s.apply(7, P(key="k" * 300, lease_ids=state_pb2.LeaseIds(count=1)))


def test_errors_map_to_grpc_status_names() -> None:
    assert InvalidArgumentError.code == "INVALID_ARGUMENT"
    assert NotFoundError.code == "NOT_FOUND"
    assert FailedPreconditionError.code == "FAILED_PRECONDITION"


# ---- snapshots ----

def busy(m: Machine) -> None:
    m.apply(add_zero("z1:5080", 1))
    m.apply(P(set_cluster_id=state_pb2.SetClusterId(cluster_id="cid")))
    two_groups(m)
    m.apply(claim(("b", 2), ("c", 1), key="claim"))
    m.apply(sizes(1, a=3, c=4))
    m.apply(start("a", 2, 9))
    m.apply(commit(1))
    m.apply(start("c", 2, 10))
    m.apply(connect("n3:1"))
    m.apply(remove(3, 3))


def test_snapshot_round_trip(m: Machine) -> None:
    busy(m)
    data = m.s.snapshot()
    r = ZeroState.restore(data)
    assert r.snapshot() == data
    assert r.state_copy() == m.s.state_copy()
    assert r.active_move() == m.s.active_move()
    assert r.group_of("a") == 2 and r.tablet("c").read_only  # type: ignore[union-attr]
    # The restored state keeps going exactly like the original.
    for s in (m.s, r):
        s.apply(100, connect("n4:1"))
        s.apply(101, commit(2))
    assert r.snapshot() == m.s.snapshot()
    assert r.member(4) is not None and r.member(3) is None  # id 3 was removed, never reused


def test_same_proposals_same_bytes() -> None:
    a, b = Machine(), Machine()
    busy(a)
    busy(b)
    assert a.s.snapshot() == b.s.snapshot()


@pytest.mark.parametrize("mangle", [
    lambda d: b"",
    lambda d: d[:5],
    lambda d: b"XXXX" + d[4:],
    lambda d: b"ZST\x09" + d[4:],
    lambda d: d[:-1],
    lambda d: d[:20] + bytes([d[20] ^ 0xFF]) + d[21:],
])
def test_restore_refuses_corrupt_bytes(m: Machine, mangle) -> None:  # type: ignore[no-untyped-def]
    busy(m)
    with pytest.raises(CorruptStateError):
        ZeroState.restore(mangle(m.s.snapshot()))


def _two_owners(snap: state_pb2.ZeroStateSnapshot) -> None:
    snap.state.groups[1].tablets["a"].CopyFrom(zero_pb2.Tablet(predicate="a", group_id=1))
    snap.state.groups[2].tablets["a"].CopyFrom(zero_pb2.Tablet(predicate="a", group_id=2))


def _member_id_ahead(snap: state_pb2.ZeroStateSnapshot) -> None:
    snap.state.groups[1].members[5].CopyFrom(zero_pb2.Member(id=5, group_id=1, addr="a:1"))


def _stray_active_move(snap: state_pb2.ZeroStateSnapshot) -> None:
    snap.active_move_id = 3


def _stuck_read_only(snap: state_pb2.ZeroStateSnapshot) -> None:
    snap.state.groups[1].tablets["a"].CopyFrom(zero_pb2.Tablet(predicate="a", group_id=1, read_only=True))


@pytest.mark.parametrize("edit, match", [
    (_stuck_read_only, "read_only=True"),
    (_two_owners, "owned by groups"),
    (_member_id_ahead, "next_member_id"),
    (_stray_active_move, "active move 3"),
    (lambda snap: setattr(snap, "format", 2), "format 2"),
])
def test_restore_refuses_inconsistent_state(edit: Callable[[state_pb2.ZeroStateSnapshot], object],
                                            match: str) -> None:
    with pytest.raises(CorruptStateError, match=match):
        crafted(edit)


# ---- deltas for streaming ----

def test_changes_since(m: Machine) -> None:
    m.apply(connect("a:1"))
    v1 = m.s.version
    m.apply(claim(("x", 1)))
    m.apply(connect("b:1"))
    m.apply(remove(2, 2))
    d = m.s.changes_since(v1)
    assert d is not None
    assert d.tablets == {"x"} and d.members == set() and d.removed_members == {2}
    assert m.s.changes_since(m.s.version) == Delta()
    assert m.s.changes_since(m.s.version + 1) is None
    assert ZeroState.restore(m.s.snapshot()).changes_since(v1) is None  # history is in memory only


def test_changes_since_history_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "CHANGE_HISTORY", 4)
    m = Machine()
    for i in range(10):
        m.apply(lease(zero_pb2.UID, 1))
    assert m.s.changes_since(6) is not None and m.s.changes_since(6).header  # type: ignore[union-attr]
    assert m.s.changes_since(5) is None
