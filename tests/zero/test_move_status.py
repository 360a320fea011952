"""Move records of cluster version 4 (SPEC "Moves that keep writes available"): the
phases COPYING -> FENCED -> COMMITTED | ROLLED_BACK in the state machine, the progress
and times they carry, the older record, the version gate, and MoveStatus."""

from __future__ import annotations

import pytest

from zero.errors import FailedPreconditionError, InvalidArgumentError
from zero.pb import state_pb2, zero_pb2
from zero.state import versions
from zero.state.moves import RECORD_VERSION, status_of

from test_state import Machine, abort, commit, start, two_groups

P = state_pb2.Proposal


@pytest.fixture
def m() -> Machine:
    m = Machine()
    two_groups(m)
    m.apply(P(tablet_sizes=zero_pb2.TabletSizes(group_id=1, sizes={"a": 1000})))
    return m


def start4(name: str = "a", dst: int = 2, ts: int = 50, now: int = 1_000) -> P:
    return P(start_move=state_pb2.StartMove(predicate=name, dst_group=dst, move_ts=ts,
                                            record_version=RECORD_VERSION, now_ms=now, size_bytes=1000))


def fence(move_id: int, now: int = 2_000, nbytes: int = 0, keys: int = 0) -> P:
    return P(fence_move=state_pb2.FenceMove(move_id=move_id, now_ms=now, bytes_copied=nbytes, keys_copied=keys))


def commit4(move_id: int, nbytes: int, keys: int, now: int) -> P:
    return P(commit_move=state_pb2.CommitMove(move_id=move_id, bytes_copied=nbytes, keys_copied=keys, now_ms=now))


def read_only(m: Machine, name: str = "a") -> bool:
    t = m.s.tablet(name)
    assert t is not None
    return t.read_only


def test_a_version_4_move_is_writable_while_copying_and_read_only_only_while_fenced(m: Machine) -> None:
    rec = m.apply(start4()).move
    assert rec is not None and rec.phase == state_pb2.MOVE_COPYING and rec.record_version == RECORD_VERSION
    assert not read_only(m)
    st = status_of(rec)
    assert (st.phase, st.size_bytes, st.started_ms, st.updated_ms, st.message) == ("COPYING", 1000, 1000, 1000, "")
    # A COPYING version-4 move may not commit: the last changes are sent only once fenced.
    m.refused(commit(1), FailedPreconditionError, "only a FENCED move may commit")
    fenced = m.apply(fence(1, now=2_000, nbytes=600, keys=6)).move
    assert fenced is not None and status_of(fenced).phase == "FENCED" and read_only(m)
    assert (fenced.bytes_copied, fenced.keys_copied, fenced.updated_ms) == (600, 6, 2_000)
    m.refused(fence(1), FailedPreconditionError, "FENCED, not COPYING")
    # Progress never shrinks and the time never goes back, whatever the proposer says.
    done = m.apply(commit4(1, 500, 5, now=1_500)).move
    assert done is not None
    st = status_of(done)
    assert (st.phase, st.bytes_copied, st.keys_copied, st.updated_ms) == ("COMMITTED", 600, 6, 2_000)
    t = m.s.tablet("a")
    assert t is not None and t.group_id == 2 and not t.read_only
    m.refused(fence(1), FailedPreconditionError, "already committed")


@pytest.mark.parametrize("fenced", [False, True], ids=["copying", "fenced"])
def test_a_version_4_move_rolls_back_from_either_active_phase(m: Machine, fenced: bool) -> None:
    m.apply(start4())
    if fenced:
        m.apply(fence(1))
    rec = m.apply(P(abort_move=state_pb2.AbortMove(move_id=1, reason="cancelled by the operator",
                                                   now_ms=3_000))).move
    assert rec is not None
    st = status_of(rec)
    assert (st.phase, st.message, st.updated_ms) == ("ROLLED_BACK", "cancelled by the operator", 3_000)
    t = m.s.tablet("a")
    assert t is not None and t.group_id == 1 and not t.read_only and t.move_ts == 0
    assert m.s.active_move() is None


def test_an_older_record_is_read_only_at_once_shown_fenced_and_cannot_be_fenced_again(m: Machine) -> None:
    rec = m.apply(start("a", 2, 50)).move
    assert rec is not None and rec.record_version == 0 and read_only(m)
    st = status_of(rec)
    assert st.phase == "FENCED" and "older zero" in st.message and st.started_ms == 0
    m.refused(fence(1), FailedPreconditionError, "older zero")
    assert status_of(m.apply(commit(1)).move).phase == "COMMITTED"  # type: ignore[arg-type]


def test_start_refuses_an_unknown_record_version(m: Machine) -> None:
    bad = start4()
    bad.start_move.record_version = 7
    m.refused(bad, InvalidArgumentError, "record_version 7")


def test_the_version_gate_keeps_version_4_move_entries_from_older_clusters() -> None:
    gated = [start4(), fence(1), commit4(1, 1, 1, 1),
             P(abort_move=state_pb2.AbortMove(move_id=1, now_ms=5))]
    for p in gated:
        assert versions.required_version(p) == 4
        with pytest.raises(FailedPreconditionError, match="needs cluster version 4"):
            versions.check_proposal(p, 3)
        versions.check_proposal(p, 4)
    for p in (start("a", 2, 50), commit(1), abort(1)):  # the older entries stay as they were
        assert versions.required_version(p) == 1
    assert versions.ZERO_VERSION >= 4


def test_the_records_survive_a_snapshot(m: Machine) -> None:
    m.apply(start4())
    m.apply(fence(1, nbytes=10, keys=1))
    restored = type(m.s).restore(m.s.snapshot())
    rec = restored.active_move()
    assert rec is not None and status_of(rec) == status_of(m.s.active_move())  # type: ignore[arg-type]
    t = restored.tablet("a")
    assert t is not None and t.read_only
