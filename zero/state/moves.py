"""Tablet move records: COPYING -> COMMITTED | ABORTED, one move at a time.

StartMove makes the tablet read-only and records the move (its id from `next_move_id`,
its timestamp leased by the proposer); CommitMove hands the tablet to the destination;
AbortMove leaves it with the source. Either clears read-only. A commit or abort naming
any move but the one in progress is refused as stale, so an old leader's late entry
cannot finish a newer move. The last MOVE_HISTORY finished records are kept for those
messages and for operators. The leader's driver (zero/leader/driver.py) proposes these.

`check_start` is the one rule for whether a move may start: the driver runs it on its
state after a read barrier (to answer the operator before leasing a timestamp), and
apply runs it again on the committed state, which decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import placement, validate
from zero.state.delta import Changes
from zero.state.tables import Tables, copy

__all__ = ["MOVE_HISTORY", "MoveView", "MoveStart", "check_target", "check_start",
           "start_move", "commit_move", "abort_move"]

MOVE_HISTORY = 32  # finished move records kept (for "stale move id" messages and operators)


class MoveView(placement.PlacementView, Protocol):
    """What `check_start` reads: ZeroState's readers, and the Tables apply mutates."""

    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]: ...
    def active_move(self) -> state_pb2.MoveRecord | None: ...
    def group_of(self, name: str) -> int: ...


@dataclass(frozen=True, slots=True)
class MoveStart:
    """A move that may start: the tablet, its owner now, and where it goes."""

    predicate: str
    src_group: int
    dst_group: int


def check_target(predicate: str, dst_group: int) -> tuple[str, int]:
    """The request's own rules, before any state is read: a valid tablet name and a
    valid destination group id (InvalidArgumentError names the field)."""
    return validate.tablet_name(predicate), validate.group_id(dst_group, "dst_group")


def check_start(view: MoveView, predicate: str, dst_group: int) -> MoveStart:
    """Whether tablet `predicate` may start moving to group `dst_group` in `view`: no
    move in progress, an owned tablet, an existing destination with a voting member
    that is not the owner, a destination the placement rules allow (not draining). The
    ZeroError raised says which rule failed."""
    name, dst = check_target(predicate, dst_group)
    active = view.active_move()
    if active is not None:
        raise FailedPreconditionError(
            f"move {active.move_id} of tablet {active.predicate!r} is in progress; one move at a time")
    src = view.group_of(name)
    if not src:
        raise NotFoundError(f"tablet {name!r} is not served by any group")
    group = view.groups.get(dst)
    if group is None:
        raise NotFoundError(f"destination group {dst} does not exist")
    if dst == src:
        raise FailedPreconditionError(f"tablet {name!r} is already served by group {dst}")
    if all(m.learner for m in group.members.values()):
        raise FailedPreconditionError(f"destination group {dst} has no voting members")
    placement.check_allowed(view, name, dst)
    return MoveStart(name, src, dst)


def start_move(t: Tables, m: state_pb2.StartMove, index: int, ch: Changes) -> state_pb2.ProposalResult:
    move = check_start(t, m.predicate, m.dst_group)
    if not 1 <= m.move_ts <= t.state.max_txn_ts:
        raise InvalidArgumentError(
            f"move_ts {m.move_ts} is not a leased timestamp (max_txn_ts {t.state.max_txn_ts})")
    name = move.predicate
    tablet = t.state.groups[move.src_group].tablets[name]
    record = state_pb2.MoveRecord(
        move_id=t.snap.next_move_id, predicate=name, src_group=move.src_group, dst_group=move.dst_group,
        move_ts=m.move_ts, phase=state_pb2.MOVE_COPYING, started_index=index,
        prev_move_ts=tablet.move_ts)
    t.snap.next_move_id += 1
    t.snap.active_move_id = record.move_id
    t.moves[record.move_id] = record
    tablet.read_only = True
    tablet.move_ts = m.move_ts
    ch.tablets.add(name)
    ch.settings = True
    return state_pb2.ProposalResult(move=record)


def commit_move(t: Tables, m: state_pb2.CommitMove, index: int, ch: Changes) -> state_pb2.ProposalResult:
    record = _in_progress(t, m.move_id)
    src, dst = t.state.groups[record.src_group], t.state.groups[record.dst_group]
    tablet = copy(src.tablets[record.predicate])
    del src.tablets[record.predicate]
    tablet.group_id = record.dst_group
    tablet.read_only = False
    dst.tablets[record.predicate].CopyFrom(tablet)
    t.owner[record.predicate] = record.dst_group
    _finish(t, record, state_pb2.MOVE_COMMITTED, index)
    ch.tablets.add(record.predicate)
    ch.settings = True
    return state_pb2.ProposalResult(move=record)


def abort_move(t: Tables, m: state_pb2.AbortMove, index: int, ch: Changes) -> state_pb2.ProposalResult:
    record = _in_progress(t, m.move_id)
    tablet = t.state.groups[record.src_group].tablets[record.predicate]
    tablet.read_only = False
    tablet.move_ts = record.prev_move_ts
    record.abort_reason = m.reason
    _finish(t, record, state_pb2.MOVE_ABORTED, index)
    ch.tablets.add(record.predicate)
    ch.settings = True
    return state_pb2.ProposalResult(move=record)


def _in_progress(t: Tables, move_id: int) -> state_pb2.MoveRecord:
    """The record of move `move_id` if it is the one in progress; else why it is stale."""
    active = t.active_move()
    if active is not None and active.move_id == move_id:
        return active
    past = t.moves.get(move_id)
    if past is not None:
        phase = state_pb2.MovePhase.Name(past.phase).removeprefix("MOVE_").lower()
        raise FailedPreconditionError(f"move {move_id} is stale: it was already {phase}")
    now = f"move {active.move_id} is in progress" if active else "no move is in progress"
    raise FailedPreconditionError(f"move id {move_id} is stale: {now}")


def _finish(t: Tables, record: state_pb2.MoveRecord, phase: state_pb2.MovePhase, index: int) -> None:
    record.phase = phase
    record.finished_index = index
    t.snap.active_move_id = 0
    finished = [mid for mid, r in t.moves.items() if r.phase != state_pb2.MOVE_COPYING]
    for mid in finished[:max(0, len(finished) - MOVE_HISTORY)]:
        del t.moves[mid]
