"""zero's replicated state machine: committed proposals in, a new state and a result out.

Rules this module keeps (SPEC "Semantics that must hold under faults" 1, 2, 5, 7, 8):

- Pure and deterministic. ``apply(index, proposal)`` reads only the state, the index and
  the proposal: no clock, no randomness, no I/O. Anything time- or chance-derived (a
  move's timestamp, the cluster id, a dedup key) is chosen by the proposer and travels in
  the proposal, so every replica computes byte-identical states.
- An error changes nothing. Every handler validates all of its input against the state
  first and mutates only after the last check; a raised ZeroError leaves ``snapshot()``
  byte-for-byte as it was (tests compare).
- Exactly-once per dedup key. A proposal whose non-empty key was applied before (within
  the last DEDUP_RETENTION keyed proposals) returns the first result and changes nothing.
  Keys and results are part of the snapshot, so a retry after a leader change or restart
  is still recognised. Failed proposals are not recorded: they changed nothing, and a
  retry is evaluated afresh.
- ``version`` becomes ``index`` whenever an apply changes anything, so it only grows.
- Ids are never reused: data-node ids, zero raft ids and move ids come from counters that
  only grow; removed members are kept in ``state.removed`` and refused forever.
- A tablet is owned by exactly one group: it is stored in exactly one ``Group.tablets``.
  Ownership changes only by a first claim, a forced reassignment or a committed move.
- ``max_uid`` and ``max_txn_ts`` only grow; a lease of ``count`` ids hands the proposer
  ``[max+1, max+count]`` and refuses to wrap around uint64.
- Liveness (``Member.healthy``, ``leader``, ``last_heartbeat_ms``) is not replicated:
  the serving zero overlays it from heartbeats.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from zero.errors import ApplyOrderError, InvalidArgumentError, ZeroError
from zero.pb import state_pb2, zero_pb2
from zero.state import cluster, leases, members, moves, placement, snapshot, tablets, txns, validate, zeros
from zero.state.dedup import Dedup
from zero.state.oracle import OracleState
from zero.state.delta import NO_DELTA, Applied, Changes, Delta
from zero.state.rules import Rules
from zero.state.tables import Tables, copy

__all__ = ["ZeroState", "Applied", "Delta", "HANDLERS", "CHANGE_HISTORY", "replay"]

CHANGE_HISTORY = 1024  # per-apply deltas kept in memory for streaming resumption

# A handler checks all of its input against the tables, then mutates them and notes what
# it changed; it returns the proposal's result or raises a ZeroError having changed
# nothing. Its second argument is the proposal's own message, a different type for each
# (hence Any here; each handler's signature names its type).
Handler = Callable[[Tables, Any, int, Changes], state_pb2.ProposalResult]

# The proposal's `change` (the oneof field's name) -> its handler.
HANDLERS: Mapping[str, Handler] = {
    "connect": members.connect,
    "remove_member": members.remove_member,
    "claim_tablets": tablets.claim_tablets,
    "force_tablet": tablets.force_tablet,
    "tablet_sizes": tablets.tablet_sizes,
    "start_move": moves.start_move,
    "fence_move": moves.fence_move,
    "commit_move": moves.commit_move,
    "abort_move": moves.abort_move,
    "lease_ids": leases.lease_ids,
    "add_zero": zeros.add_zero,
    "remove_zero": zeros.remove_zero,
    "set_cluster_id": cluster.set_cluster_id,
    "set_rebalance": cluster.set_rebalance,
    "decide_txns": txns.decide_txns,
    "advance_safe_ts": txns.advance_safe_ts,
    "set_placement": placement.set_placement,
    "set_group_replicas": placement.set_group_replicas,
    "drain_group": placement.drain_group,
    "delete_tablet": tablets.delete_tablet,
    "bump_lease": leases.bump_lease,
}
# Proposals that are idempotent by their content (zero/state/txns.py): not recorded for dedup.
NOT_DEDUPED = frozenset({"decide_txns", "advance_safe_ts"})


class ZeroState:
    """The replicated state: a MembershipState plus the bookkeeping apply() needs."""

    def __init__(self) -> None:
        self._t = Tables(snapshot.empty())
        self._dedup = Dedup()
        self._changes: collections.deque[tuple[int, Delta]] = collections.deque(maxlen=CHANGE_HISTORY)
        self._history_floor = 0  # deltas cover every version above this
        self._applied_index = 0  # in memory only: snapshots must not depend on failed applies

    @property
    def _state(self) -> zero_pb2.MembershipState:
        return self._t.snap.state

    # ---- applying ----

    def apply(self, index: int, proposal: state_pb2.Proposal) -> Applied:
        """Apply one committed proposal at Raft index ``index`` (strictly increasing).

        Raises a ZeroError subclass (and changes nothing) when the proposal is refused.
        """
        if index <= self._applied_index:
            raise ApplyOrderError(f"index {index} is not above the last applied index {self._applied_index}")
        self._applied_index = index
        key = validate.dedup_key(proposal.key)
        which = proposal.WhichOneof("change")
        if which is None:
            raise InvalidArgumentError("proposal carries no change")
        dedup = self._dedup
        state = self._t.snap.state
        if key and key in dedup:
            return Applied(index, state.version, dedup.result(key), NO_DELTA, True)
        changes = Changes()
        result = HANDLERS[which](self._t, getattr(proposal, which), index, changes)
        delta = changes.freeze()
        if delta is not NO_DELTA:
            state.version = index
            if len(self._changes) == CHANGE_HISTORY:
                self._history_floor = self._changes[0][0]  # about to be dropped
            self._changes.append((index, delta))
        if key and which not in NOT_DEDUPED:
            dedup.record(key, index, result)
        return Applied(index, state.version, copy(result), delta, False)

    # ---- readers (all return copies) ----

    @property
    def version(self) -> int:
        return self._state.version

    @property
    def cluster_id(self) -> str:
        return self._state.cluster_id

    @property
    def view(self) -> zero_pb2.MembershipState:
        """The live membership state, read-only by contract (no copy): for readers that
        walk it whole on the event loop (the full-state stream). state_copy() otherwise."""
        return self._state

    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]:
        """The data-node groups by id: the live map, read-only by contract (no copy)."""
        return self._state.groups

    @property
    def removed_zeros(self) -> frozenset[int]:
        return frozenset(self._t.removed_zeros)

    def edited(self, edit: Callable[[state_pb2.ZeroStateSnapshot], None]) -> ZeroState:
        """A new state: this one's snapshot as `edit` changed it, restored (which checks
        every invariant again). For offline rewrites (zero/ops/recovery.py), never for apply."""
        snap = state_pb2.ZeroStateSnapshot.FromString(self._snapshot_payload())
        edit(snap)
        return ZeroState.restore(snapshot.frame(snap.SerializeToString(deterministic=True)))

    @property
    def zeros(self) -> Mapping[int, zero_pb2.Member]:
        """The zero peers by raft id: the live map, read-only by contract (no copy)."""
        return self._state.zeros

    @property
    def next_raft_id(self) -> int:
        """The raft id a joining zero that asks for none is given (ids are never reused)."""
        return self._t.snap.next_raft_id

    @property
    def max_uid(self) -> int:
        return self._state.max_uid

    @property
    def max_txn_ts(self) -> int:
        return self._state.max_txn_ts

    @property
    def cluster_version(self) -> int:
        """The lowest software version the current zeros announced (zero/state/versions.py)."""
        return self._state.cluster_version

    def zero_version(self, raft_id: int) -> int:
        """The version zero `raft_id` announced; 0 when it has not."""
        return self._t.snap.zero_versions.get(raft_id, 0)

    @property
    def rebalance_enabled(self) -> bool:
        return not self._t.snap.rebalance_disabled

    @property
    def rules(self) -> Rules:
        """The placement policy, compiled (zero/state/rules.py): immutable."""
        return self._t.rules

    def placement(self) -> zero_pb2.PlacementPolicy:
        """The placement policy as set (version = the index that set it; 0 = never)."""
        return copy(self._t.snap.placement)

    def draining(self, gid: int) -> bool:
        return self._t.draining(gid)

    def group_size(self, gid: int) -> int:
        """Group `gid`'s own size (SetGroupReplicas); 0 = the zeros' --replicas."""
        return self._t.settings(gid).replicas

    def draining_groups(self) -> list[int]:
        return sorted(g for g, s in self._t.snap.group_settings.items() if s.draining)

    @property
    def oracle(self) -> OracleState:
        """The transaction oracle's state: the live object, read-only by contract."""
        return self._t.oracle

    def state_copy(self) -> zero_pb2.MembershipState:
        return copy(self._state)

    def tablet(self, name: str) -> zero_pb2.Tablet | None:
        gid = self._t.owner.get(name)
        return copy(self._state.groups[gid].tablets[name]) if gid else None

    def group_of(self, name: str) -> int:
        """The group owning tablet ``name``; 0 when nobody owns it."""
        return self._t.group_of(name)

    def member(self, member_id: int) -> zero_pb2.Member | None:
        gid = self._t.member_group.get(member_id)
        return copy(self._t.member(member_id)) if gid else None

    def member_ids(self) -> list[int]:
        """Ids of every data-node member (from the Python index, not the protobuf maps)."""
        return list(self._t.member_group)

    def member_by_addr(self, addr: str) -> zero_pb2.Member | None:
        mid = self._t.addr_member.get(addr)
        return self.member(mid) if mid is not None else None

    def is_removed(self, member_id: int, *, zero: bool = False) -> bool:
        return member_id in (self._t.removed_zeros if zero else self._t.removed_members)

    def active_move(self) -> state_pb2.MoveRecord | None:
        active = self._t.active_move()
        return copy(active) if active is not None else None

    def moves(self) -> list[state_pb2.MoveRecord]:
        return [copy(r) for r in self._t.moves.values()]

    def changes_since(self, version: int) -> Delta | None:
        """Everything changed after ``version``, or None when the in-memory history does
        not reach back that far (or ``version`` is from another history): send it all."""
        if version == self._state.version:
            return Delta()
        if version > self._state.version or version < self._history_floor:
            return None
        delta = Delta()
        for v, d in self._changes:
            if v > version:
                delta = delta.merge(d)
        return delta

    # ---- snapshots (zero/state/snapshot.py) ----

    def snapshot(self) -> bytes:
        """Deterministic bytes: equal states give equal bytes."""
        return snapshot.frame(self._snapshot_payload())

    def _snapshot_payload(self) -> bytes:
        return snapshot.encode(self._t, self._dedup.records())

    @classmethod
    def restore(cls, data: bytes) -> ZeroState:
        """A state from ``snapshot()`` bytes; CorruptStateError says what is wrong."""
        snap = snapshot.decode(data)
        self = cls()
        self._t = Tables(snap)
        self._dedup = Dedup(snap.dedup)
        del snap.dedup[:]
        self._history_floor = self._applied_index = snap.state.version
        snapshot.check(self._t)
        return self


def replay(proposals: Iterable[tuple[int, state_pb2.Proposal]]) -> ZeroState:
    """A state built by applying ``(index, proposal)`` pairs, skipping refused ones."""
    state = ZeroState()
    for index, proposal in proposals:
        try:
            state.apply(index, proposal)
        except ZeroError:
            pass
    return state
