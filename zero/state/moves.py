"""Tablet move records, one move at a time:

    record_version 4:  COPYING (writable) -> FenceMove -> FENCED (read-only) -> COMMITTED
    older records:     COPYING (read-only) ------------------------------------> COMMITTED
    any active phase -> AbortMove -> ABORTED (ROLLED_BACK to operators)

StartMove records the move (its id from `next_move_id`, its timestamp leased by the
proposer); a record of version 4 (cluster version 4, docs/DESIGN.md "Tablet moves")
leaves the tablet writable until FenceMove, and may only commit once FENCED; an older
record makes the tablet read-only at once. CommitMove hands the tablet to the
destination; AbortMove leaves it with the source. Either clears read-only. Times and
progress (bytes and keys copied) come from the proposer, as apply must be deterministic. A commit or abort naming
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

__all__ = ["MOVE_HISTORY", "RECORD_VERSION", "ACTIVE_PHASES", "MoveView", "MoveStart", "check_target",
           "check_start", "start_move", "fence_move", "commit_move", "abort_move", "phase_name", "status_of"]

MOVE_HISTORY = 32  # finished move records kept (for "stale move id" messages and operators)
RECORD_VERSION = 4  # the cluster version whose records have a FENCED phase
ACTIVE_PHASES = frozenset({state_pb2.MOVE_COPYING, state_pb2.MOVE_FENCED})


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
    if m.record_version not in (0, RECORD_VERSION):
        raise InvalidArgumentError(f"record_version {m.record_version} is not 0 or {RECORD_VERSION}")
    name = move.predicate
    tablet = t.state.groups[move.src_group].tablets[name]
    record = state_pb2.MoveRecord(
        move_id=t.snap.next_move_id, predicate=name, src_group=move.src_group, dst_group=move.dst_group,
        move_ts=m.move_ts, phase=state_pb2.MOVE_COPYING, started_index=index,
        prev_move_ts=tablet.move_ts, record_version=m.record_version, size_bytes=max(0, m.size_bytes),
        started_ms=m.now_ms, updated_ms=m.now_ms)
    t.snap.next_move_id += 1
    t.snap.active_move_id = record.move_id
    t.moves[record.move_id] = record
    tablet.move_ts = m.move_ts
    if not m.record_version:  # an older record fences at once
        _fence(t, record)
    ch.tablets.add(name)
    ch.settings = True
    return state_pb2.ProposalResult(move=record)


def fence_move(t: Tables, m: state_pb2.FenceMove, index: int, ch: Changes) -> state_pb2.ProposalResult:
    """COPYING -> FENCED for a record of version 4: the tablet becomes read-only."""
    record = _in_progress(t, m.move_id)
    if record.record_version < RECORD_VERSION:
        raise FailedPreconditionError(f"move {record.move_id} was recorded by an older zero; it is fenced already")
    if record.phase != state_pb2.MOVE_COPYING:
        raise FailedPreconditionError(f"move {record.move_id} is {phase_name(record)}, not COPYING")
    record.phase = state_pb2.MOVE_FENCED
    _progress(record, m.bytes_copied, m.keys_copied, m.now_ms)
    _fence(t, record)
    ch.tablets.add(record.predicate)
    ch.settings = True
    return state_pb2.ProposalResult(move=record)


def commit_move(t: Tables, m: state_pb2.CommitMove, index: int, ch: Changes) -> state_pb2.ProposalResult:
    record = _in_progress(t, m.move_id)
    if record.record_version >= RECORD_VERSION and record.phase != state_pb2.MOVE_FENCED:
        raise FailedPreconditionError(f"move {record.move_id} is {phase_name(record)}: "
                                      "only a FENCED move may commit")
    _progress(record, m.bytes_copied, m.keys_copied, m.now_ms)
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
    _progress(record, 0, 0, m.now_ms)
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
        phase = "aborted" if past.phase == state_pb2.MOVE_ABORTED else "committed"
        raise FailedPreconditionError(f"move {move_id} is stale: it was already {phase}")
    now = f"move {active.move_id} is in progress" if active else "no move is in progress"
    raise FailedPreconditionError(f"move id {move_id} is stale: {now}")


def _finish(t: Tables, record: state_pb2.MoveRecord, phase: state_pb2.MovePhase, index: int) -> None:
    record.phase = phase
    record.finished_index = index
    t.snap.active_move_id = 0
    finished = [mid for mid, r in t.moves.items() if r.phase not in ACTIVE_PHASES]
    for mid in finished[:max(0, len(finished) - MOVE_HISTORY)]:
        del t.moves[mid]


def _fence(t: Tables, record: state_pb2.MoveRecord) -> None:
    """Writes to the moving tablet are refused from here (TABLET_MOVING) until it ends."""
    tablet = t.state.groups[record.src_group].tablets[record.predicate]
    tablet.read_only = True


def _progress(record: state_pb2.MoveRecord, nbytes: int, keys: int, now_ms: int) -> None:
    """Progress only grows; a time only moves forward (the proposer's clock may step back)."""
    record.bytes_copied = max(record.bytes_copied, nbytes)
    record.keys_copied = max(record.keys_copied, keys)
    record.updated_ms = max(record.updated_ms, now_ms)


def phase_name(record: state_pb2.MoveRecord) -> str:
    """The phase as operators see it (SPEC): QUEUED, COPYING, FENCED, COMMITTED or
    ROLLED_BACK. An older record's COPYING is read-only, which is FENCED."""
    if record.phase == state_pb2.MOVE_COMMITTED:
        return "COMMITTED"
    if record.phase == state_pb2.MOVE_ABORTED:
        return "ROLLED_BACK"
    if record.phase == state_pb2.MOVE_COPYING and record.record_version >= RECORD_VERSION:
        return "COPYING"
    return "FENCED"


def status_of(record: state_pb2.MoveRecord) -> zero_pb2.MoveStatus:
    message = record.abort_reason
    if not message and record.record_version < RECORD_VERSION and record.phase in ACTIVE_PHASES:
        message = "recorded by an older zero: read-only for the whole copy"
    return zero_pb2.MoveStatus(
        move_id=record.move_id, predicate=record.predicate, src_group=record.src_group,
        dst_group=record.dst_group, phase=phase_name(record), bytes_copied=record.bytes_copied,
        keys_copied=record.keys_copied, size_bytes=record.size_bytes, started_ms=record.started_ms,
        updated_ms=record.updated_ms, message=message)
