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
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from zero.state import validate
from zero.pb import state_pb2, zero_pb2
from zero.errors import (
    ApplyOrderError,
    CorruptStateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ZeroError,
)

__all__ = [
    "ZeroState",
    "Applied",
    "Delta",
    "ZeroError",
    "InvalidArgumentError",
    "NotFoundError",
    "FailedPreconditionError",
    "CorruptStateError",
    "ApplyOrderError",
    "DEDUP_RETENTION",
    "MOVE_HISTORY",
    "MAX_LEASE",
]

DEDUP_RETENTION = 10_000  # keyed proposals remembered; a retry older than this re-applies
MOVE_HISTORY = 32  # finished move records kept (for "stale move id" messages and operators)
CHANGE_HISTORY = 1024  # per-apply deltas kept in memory for streaming resumption
MAX_LEASE = 1 << 32  # ids one lease proposal may take; guards against a runaway proposer
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1

FORMAT = 1
_MAGIC = b"ZST\x01"  # file magic + format byte; then CRC-32 (big-endian) of the payload
_HEADER = struct.Struct(">4sI")

Proposal = state_pb2.Proposal
ProposalResult = state_pb2.ProposalResult
MoveRecord = state_pb2.MoveRecord


@dataclass(frozen=True, slots=True)
class Delta:
    """What one apply (or a run of them) changed, by id and name.

    A streaming layer reads the current value of each changed member/tablet from the
    state; a tablet that moved appears once, under its new group.
    """

    members: frozenset[int] = frozenset()
    removed_members: frozenset[int] = frozenset()
    zeros: frozenset[int] = frozenset()
    removed_zeros: frozenset[int] = frozenset()
    tablets: frozenset[str] = frozenset()
    removed_tablets: frozenset[str] = frozenset()
    header: bool = False  # max_uid, max_txn_ts or cluster_id changed
    settings: bool = False  # bookkeeping outside MembershipState changed (rebalance switch)

    @property
    def empty(self) -> bool:
        return not (self.members or self.removed_members or self.zeros or self.removed_zeros
                    or self.tablets or self.removed_tablets or self.header or self.settings)

    def merge(self, later: Delta) -> Delta:
        """This delta followed by ``later``. Removals are final: ids are never reused."""
        removed_members = self.removed_members | later.removed_members
        removed_zeros = self.removed_zeros | later.removed_zeros
        return Delta(
            members=(self.members | later.members) - removed_members,
            removed_members=removed_members,
            zeros=(self.zeros | later.zeros) - removed_zeros,
            removed_zeros=removed_zeros,
            tablets=(self.tablets - later.removed_tablets) | later.tablets,
            removed_tablets=(self.removed_tablets - later.tablets) | later.removed_tablets,
            header=self.header or later.header,
            settings=self.settings or later.settings,
        )


_FLAG_DELTAS = {(h, st): Delta(header=h, settings=st) for h in (False, True) for st in (False, True)}
_NO_DELTA = _FLAG_DELTAS[False, False]  # the one empty Delta freeze() returns


@dataclass(slots=True)
class _Changes:
    """Mutable collector a handler fills while it mutates; frozen into a Delta."""

    members: set[int] = field(default_factory=set)
    removed_members: set[int] = field(default_factory=set)
    zeros: set[int] = field(default_factory=set)
    removed_zeros: set[int] = field(default_factory=set)
    tablets: set[str] = field(default_factory=set)
    header: bool = False
    settings: bool = False

    def freeze(self) -> Delta:
        if not (self.members or self.removed_members or self.zeros or self.removed_zeros or self.tablets):
            # The common case (leases: only the header moved) shares one immutable Delta.
            return _FLAG_DELTAS[self.header, self.settings]
        return Delta(frozenset(self.members), frozenset(self.removed_members),
                     frozenset(self.zeros), frozenset(self.removed_zeros),
                     frozenset(self.tablets), frozenset(), self.header, self.settings)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one successful apply. ``result`` is the caller's own copy."""

    index: int
    version: int  # the state's version after this apply
    result: state_pb2.ProposalResult
    delta: Delta
    duplicate: bool  # the key was seen before: result is the first apply's, nothing changed

    @property
    def member(self) -> zero_pb2.Member | None:
        return self.result.member if self.result.HasField("member") else None

    @property
    def tablets(self) -> list[zero_pb2.Tablet]:
        return list(self.result.tablets.tablets)

    @property
    def ids(self) -> zero_pb2.AssignedIds | None:
        return self.result.ids if self.result.HasField("ids") else None

    @property
    def move(self) -> state_pb2.MoveRecord | None:
        return self.result.move if self.result.HasField("move") else None


def _copy(msg: Any) -> Any:
    out = type(msg)()
    out.CopyFrom(msg)
    return out



def _framed(payload: bytes) -> bytes:
    """Snapshot bytes: magic and CRC-32 of the payload, then the payload."""
    return _HEADER.pack(_MAGIC, zlib.crc32(payload)) + payload

class ZeroState:
    """The replicated state: a MembershipState plus the bookkeeping apply() needs."""

    def __init__(self) -> None:
        self._snap = state_pb2.ZeroStateSnapshot(
            format=FORMAT, next_member_id=1, next_raft_id=1, next_move_id=1)
        # key -> (index, result): DedupRecords are built only for snapshots (hot path).
        self._dedup: collections.OrderedDict[str, tuple[int, state_pb2.ProposalResult]] = collections.OrderedDict()
        self._moves: dict[int, state_pb2.MoveRecord] = {}  # ascending move id
        self._changes: collections.deque[tuple[int, Delta]] = collections.deque(maxlen=CHANGE_HISTORY)
        self._history_floor = 0  # deltas cover every version above this
        self._applied_index = 0  # in memory only: snapshots must not depend on failed applies
        self._reindex()
        self._handlers: dict[str, Callable[[Any, int, _Changes], state_pb2.ProposalResult]] = {
            "connect": self._connect,
            "remove_member": self._remove_member,
            "claim_tablets": self._claim_tablets,
            "force_tablet": self._force_tablet,
            "tablet_sizes": self._tablet_sizes,
            "start_move": self._start_move,
            "commit_move": self._commit_move,
            "abort_move": self._abort_move,
            "lease_ids": self._lease_ids,
            "add_zero": self._add_zero,
            "remove_zero": self._remove_zero,
            "set_cluster_id": self._set_cluster_id,
            "set_rebalance": self._set_rebalance,
        }

    @property
    def _state(self) -> zero_pb2.MembershipState:
        return self._snap.state

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
        state = self._snap.state
        if key and key in dedup:
            return Applied(index, state.version, _copy(dedup[key][1]), _NO_DELTA, True)
        changes = _Changes()
        result = self._handlers[which](getattr(proposal, which), index, changes)
        delta = changes.freeze()
        if delta is not _NO_DELTA:
            state.version = index
            if len(self._changes) == CHANGE_HISTORY:
                self._history_floor = self._changes[0][0]  # about to be dropped
            self._changes.append((index, delta))
        if key:
            dedup[key] = (index, result)
            if len(dedup) > DEDUP_RETENTION:
                dedup.popitem(last=False)
        return Applied(index, state.version, _copy(result), delta, False)

    # ---- data nodes ----

    def _connect(self, c: state_pb2.ConnectMember, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        addr = validate.address(c.addr)
        holder = self._addr_member.get(addr)
        if c.id:
            if c.id in self._removed_members:
                raise FailedPreconditionError(
                    f"member {c.id} was removed from the cluster; a removed id never rejoins "
                    f"(start the node with a fresh data directory)")
            if holder is not None and holder != c.id:
                raise FailedPreconditionError(f"address {addr} is held by member {holder}, not {c.id}")
            gid = self._member_group.get(c.id)
            if gid is None:
                raise NotFoundError(f"member {c.id} is unknown; connect with id 0 to join as a new member")
            if c.group_id and c.group_id != gid:
                raise FailedPreconditionError(f"member {c.id} belongs to group {gid}, not {c.group_id}")
            member = self._state.groups[gid].members[c.id]
            if member.addr != addr:
                self._check_addr_free_of_zeros(addr)
                del self._addr_member[member.addr]
                member.addr = addr
                self._addr_member[addr] = c.id
                ch.members.add(c.id)
            return state_pb2.ProposalResult(member=member)
        if holder is not None:  # idempotent, as Dgraph Zero: the address names the member
            return state_pb2.ProposalResult(member=self._member(holder))
        self._check_addr_free_of_zeros(addr)
        gid = self._choose_group(c)
        if self._snap.next_member_id > UINT64_MAX:
            raise FailedPreconditionError("member ids are exhausted")
        mid = self._snap.next_member_id
        self._snap.next_member_id += 1
        group = self._state.groups[gid]  # creates a requested group that did not exist yet
        group.members[mid].CopyFrom(zero_pb2.Member(id=mid, group_id=gid, addr=addr, learner=c.learner))
        self._member_group[mid] = gid
        self._addr_member[addr] = mid
        ch.members.add(mid)
        return state_pb2.ProposalResult(member=group.members[mid])

    def _choose_group(self, c: state_pb2.ConnectMember) -> int:
        """The requested group, else the first (lowest id) with fewer than ``replicas``
        voting members, else a new group. Learners replicate a group they must name."""
        if c.replicas == 0:
            raise InvalidArgumentError("replicas must be at least 1")
        groups = self._state.groups
        if c.learner:
            if not c.group_id:
                raise InvalidArgumentError("a learner must name the group it replicates")
            if c.group_id not in groups:
                raise NotFoundError(f"group {c.group_id} does not exist")
            return c.group_id
        if c.group_id:
            voters = self._voters(c.group_id)
            if voters >= c.replicas:
                raise FailedPreconditionError(
                    f"group {c.group_id} already has {voters} voting members (replicas={c.replicas})")
            return c.group_id
        for gid in sorted(groups):
            if self._voters(gid) < c.replicas:
                return int(gid)
        new = max(groups, default=0) + 1
        if new > UINT32_MAX:
            raise FailedPreconditionError("group ids are exhausted")
        return new

    def _remove_member(self, r: state_pb2.RemoveMember, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        if r.group_id == 0:
            raise InvalidArgumentError("group 0 names a zero peer; remove zeros with RemoveZero")
        if r.node_id in self._removed_members:
            raise FailedPreconditionError(f"member {r.node_id} was already removed")
        if r.group_id not in self._state.groups:
            raise NotFoundError(f"group {r.group_id} does not exist")
        gid = self._member_group.get(r.node_id)
        if gid != r.group_id:
            where = "is unknown" if gid is None else f"is in group {gid}"
            raise NotFoundError(f"member {r.node_id} {where}, not in group {r.group_id}")
        group = self._state.groups[gid]
        member = group.members[r.node_id]
        if not member.learner and self._voters(gid) == 1:
            if group.tablets:
                raise FailedPreconditionError(
                    f"member {r.node_id} is the last voting member of group {gid}, which still "
                    f"serves {len(group.tablets)} tablets; move them away first")
            active = self._moves.get(self._snap.active_move_id)
            if active is not None and active.dst_group == gid:
                raise FailedPreconditionError(
                    f"member {r.node_id} is the last voting member of group {gid}, "
                    f"the destination of move {active.move_id} in progress")
        removed = _copy(member)
        del group.members[r.node_id]
        del self._member_group[r.node_id]
        del self._addr_member[removed.addr]
        self._state.removed.append(removed)
        self._removed_members.add(r.node_id)
        ch.removed_members.add(r.node_id)
        return state_pb2.ProposalResult(member=removed)

    # ---- tablets ----

    def _claim_tablets(self, c: state_pb2.ClaimTablets, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        # Check the whole batch first (simulating earlier claims of the same batch) so a
        # refused batch changes nothing.
        claimed: dict[str, int] = {}
        for t in c.tablets:
            validate.tablet_name(t.predicate)
            if self._owner.get(t.predicate) or claimed.get(t.predicate) or not t.group_id:
                continue
            if t.group_id not in self._state.groups:
                raise NotFoundError(f"group {t.group_id} does not exist (claiming tablet {t.predicate!r})")
            claimed[t.predicate] = t.group_id
        out = state_pb2.TabletList()
        for t in c.tablets:
            owner = self._owner.get(t.predicate, 0)
            if not owner and t.group_id:
                owner = t.group_id
                self._state.groups[owner].tablets[t.predicate].CopyFrom(
                    zero_pb2.Tablet(predicate=t.predicate, group_id=owner))
                self._owner[t.predicate] = owner
                ch.tablets.add(t.predicate)
            if owner:
                out.tablets.append(self._state.groups[owner].tablets[t.predicate])
            else:
                out.tablets.append(zero_pb2.Tablet(predicate=t.predicate))
        return state_pb2.ProposalResult(tablets=out)

    def _force_tablet(self, f: state_pb2.ForceTablet, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        name = validate.tablet_name(f.predicate)
        gid = validate.group_id(f.group_id)
        if gid not in self._state.groups:
            raise NotFoundError(f"group {gid} does not exist")
        active = self._moves.get(self._snap.active_move_id)
        if active is not None and active.predicate == name:
            raise FailedPreconditionError(f"tablet {name!r} is being moved (move {active.move_id})")
        current = self._owner.get(name, 0)
        if current != gid:
            tablet = zero_pb2.Tablet(predicate=name)
            if current:
                tablet.CopyFrom(self._state.groups[current].tablets[name])
                del self._state.groups[current].tablets[name]
            tablet.group_id = gid
            self._state.groups[gid].tablets[name].CopyFrom(tablet)
            self._owner[name] = gid
            ch.tablets.add(name)
        return state_pb2.ProposalResult(
            tablets=state_pb2.TabletList(tablets=[self._state.groups[gid].tablets[name]]))

    def _tablet_sizes(self, s: zero_pb2.TabletSizes, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        if s.group_id not in self._state.groups:
            raise NotFoundError(f"group {s.group_id} does not exist")
        for name, size in s.sizes.items():
            validate.tablet_name(name)
            validate.tablet_size(name, size)
        tablets = self._state.groups[s.group_id].tablets
        for name in sorted(s.sizes):
            # A report about a tablet this group no longer owns is stale: ignore it.
            if name in tablets and tablets[name].size_bytes != s.sizes[name]:
                tablets[name].size_bytes = s.sizes[name]
                ch.tablets.add(name)
        return state_pb2.ProposalResult(ok=True)

    # ---- moves: COPYING -> COMMITTED | ABORTED, one at a time ----

    def _start_move(self, m: state_pb2.StartMove, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        name = validate.tablet_name(m.predicate)
        dst = validate.group_id(m.dst_group, "destination group")
        active = self._moves.get(self._snap.active_move_id)
        if active is not None:
            raise FailedPreconditionError(
                f"move {active.move_id} of tablet {active.predicate!r} is in progress")
        src = self._owner.get(name)
        if not src:
            raise NotFoundError(f"tablet {name!r} is not served by any group")
        if dst not in self._state.groups:
            raise NotFoundError(f"destination group {dst} does not exist")
        if dst == src:
            raise FailedPreconditionError(f"tablet {name!r} is already served by group {dst}")
        if self._voters(dst) == 0:
            raise FailedPreconditionError(f"destination group {dst} has no voting members")
        if not 1 <= m.move_ts <= self._state.max_txn_ts:
            raise InvalidArgumentError(
                f"move_ts {m.move_ts} is not a leased timestamp (max_txn_ts {self._state.max_txn_ts})")
        tablet = self._state.groups[src].tablets[name]
        record = state_pb2.MoveRecord(
            move_id=self._snap.next_move_id, predicate=name, src_group=src, dst_group=dst,
            move_ts=m.move_ts, phase=state_pb2.MOVE_COPYING, started_index=index,
            prev_move_ts=tablet.move_ts)
        self._snap.next_move_id += 1
        self._snap.active_move_id = record.move_id
        self._moves[record.move_id] = record
        tablet.read_only = True
        tablet.move_ts = m.move_ts
        ch.tablets.add(name)
        ch.settings = True
        return state_pb2.ProposalResult(move=record)

    def _active_move(self, move_id: int) -> state_pb2.MoveRecord:
        active = self._moves.get(self._snap.active_move_id)
        if active is not None and active.move_id == move_id:
            return active
        past = self._moves.get(move_id)
        if past is not None:
            phase = state_pb2.MovePhase.Name(past.phase).removeprefix("MOVE_").lower()
            raise FailedPreconditionError(f"move {move_id} is stale: it was already {phase}")
        now = f"move {active.move_id} is in progress" if active else "no move is in progress"
        raise FailedPreconditionError(f"move id {move_id} is stale: {now}")

    def _finish_move(self, record: state_pb2.MoveRecord, phase: int, index: int) -> None:
        record.phase = phase  # type: ignore[assignment]
        record.finished_index = index
        self._snap.active_move_id = 0
        finished = [mid for mid, r in self._moves.items() if r.phase != state_pb2.MOVE_COPYING]
        for mid in finished[:max(0, len(finished) - MOVE_HISTORY)]:
            del self._moves[mid]

    def _commit_move(self, m: state_pb2.CommitMove, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        record = self._active_move(m.move_id)
        src, dst = self._state.groups[record.src_group], self._state.groups[record.dst_group]
        tablet = _copy(src.tablets[record.predicate])
        del src.tablets[record.predicate]
        tablet.group_id = record.dst_group
        tablet.read_only = False
        dst.tablets[record.predicate].CopyFrom(tablet)
        self._owner[record.predicate] = record.dst_group
        self._finish_move(record, state_pb2.MOVE_COMMITTED, index)
        ch.tablets.add(record.predicate)
        ch.settings = True
        return state_pb2.ProposalResult(move=record)

    def _abort_move(self, m: state_pb2.AbortMove, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        record = self._active_move(m.move_id)
        tablet = self._state.groups[record.src_group].tablets[record.predicate]
        tablet.read_only = False
        tablet.move_ts = record.prev_move_ts
        record.abort_reason = m.reason
        self._finish_move(record, state_pb2.MOVE_ABORTED, index)
        ch.tablets.add(record.predicate)
        ch.settings = True
        return state_pb2.ProposalResult(move=record)

    # ---- leases ----

    def _lease_ids(self, lease: state_pb2.LeaseIds, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        if not 1 <= lease.count <= MAX_LEASE:
            raise InvalidArgumentError(f"lease count {lease.count} must be between 1 and {MAX_LEASE}")
        st = self._snap.state
        kind, count = lease.kind, lease.count
        if kind == zero_pb2.UID:
            current = st.max_uid
        elif kind == zero_pb2.TIMESTAMP:
            current = st.max_txn_ts
        else:
            raise InvalidArgumentError(f"unknown id kind {kind}")
        if count > UINT64_MAX - current:
            raise FailedPreconditionError(
                f"leasing {count} ids above {current} would overflow uint64: ids are exhausted")
        end = current + count
        if kind == zero_pb2.UID:
            st.max_uid = end
        else:
            st.max_txn_ts = end
        ch.header = True
        return state_pb2.ProposalResult(ids=zero_pb2.AssignedIds(start_id=current + 1, end_id=end))

    # ---- zeros and cluster settings ----

    def _add_zero(self, z: state_pb2.AddZero, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        addr = validate.address(z.addr)
        holder = self._addr_zero.get(addr)
        rid = z.raft_id
        if rid == 0:
            if holder is not None:  # idempotent, as Connect
                return state_pb2.ProposalResult(member=self._state.zeros[holder])
            rid = self._snap.next_raft_id
        if rid in self._removed_zeros:
            raise FailedPreconditionError(f"zero {rid} was removed from the cluster; its id is never reused")
        if holder is not None and holder != rid:
            raise FailedPreconditionError(f"address {addr} is held by zero {holder}, not {rid}")
        if addr in self._addr_member:
            raise FailedPreconditionError(f"address {addr} is held by data node {self._addr_member[addr]}")
        if rid >= UINT64_MAX:
            raise InvalidArgumentError(f"raft id {rid} is out of range")
        zeros = self._state.zeros
        if z.version and self._snap.zero_versions.get(rid) != z.version:
            self._snap.zero_versions[rid] = z.version  # the zero's announcement (zero/state/versions.py)
            ch.settings = True
        if rid in zeros and zeros[rid].addr == addr:
            self._update_cluster_version(ch)
            return state_pb2.ProposalResult(member=zeros[rid])
        if rid in zeros:
            del self._addr_zero[zeros[rid].addr]
        zeros[rid].CopyFrom(zero_pb2.Member(id=rid, addr=addr))
        self._addr_zero[addr] = rid
        self._snap.next_raft_id = max(self._snap.next_raft_id, rid + 1)
        ch.zeros.add(rid)
        self._update_cluster_version(ch)
        return state_pb2.ProposalResult(member=zeros[rid])

    def _update_cluster_version(self, ch: _Changes) -> None:
        """cluster_version = the lowest version announced by a current zero (one that has
        not announced counts as 1, the first release); 0 while there are no zeros."""
        st = self._state
        versions = self._snap.zero_versions
        v = min((versions.get(rid, 1) for rid in st.zeros), default=0)
        if v != st.cluster_version:
            st.cluster_version = v
            ch.header = True

    def _remove_zero(self, z: state_pb2.RemoveZero, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        if z.raft_id in self._removed_zeros:
            raise FailedPreconditionError(f"zero {z.raft_id} was already removed")
        zeros = self._state.zeros
        if z.raft_id not in zeros:
            raise NotFoundError(f"zero {z.raft_id} is not a member of the cluster")
        if len(zeros) == 1:
            raise FailedPreconditionError(f"zero {z.raft_id} is the last zero; it cannot be removed")
        removed = _copy(zeros[z.raft_id])
        del zeros[z.raft_id]
        del self._addr_zero[removed.addr]
        self._state.removed.append(removed)
        self._removed_zeros.add(z.raft_id)
        if z.raft_id in self._snap.zero_versions:
            del self._snap.zero_versions[z.raft_id]
        ch.removed_zeros.add(z.raft_id)
        self._update_cluster_version(ch)
        return state_pb2.ProposalResult(member=removed)

    def _set_cluster_id(self, s: state_pb2.SetClusterId, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        cid = validate.cluster_id(s.cluster_id)
        if self._state.cluster_id and self._state.cluster_id != cid:
            raise FailedPreconditionError(
                f"cluster id is already {self._state.cluster_id!r}; it is set once")
        if not self._state.cluster_id:
            self._state.cluster_id = cid
            ch.header = True
        return state_pb2.ProposalResult(ok=True)

    def _set_rebalance(self, s: state_pb2.SetRebalanceEnabled, index: int, ch: _Changes) -> state_pb2.ProposalResult:
        if self._snap.rebalance_disabled == s.enabled:
            self._snap.rebalance_disabled = not s.enabled
            ch.settings = True
        return state_pb2.ProposalResult(ok=True)

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
        return frozenset(self._removed_zeros)

    def edited(self, edit: Callable[[state_pb2.ZeroStateSnapshot], None]) -> ZeroState:
        """A new state: this one's snapshot as `edit` changed it, restored (which checks
        every invariant again). For offline rewrites (zero/ops/recovery.py), never for apply."""
        snap = state_pb2.ZeroStateSnapshot.FromString(self._snapshot_payload())
        edit(snap)
        return ZeroState.restore(_framed(snap.SerializeToString(deterministic=True)))

    @property
    def zeros(self) -> Mapping[int, zero_pb2.Member]:
        """The zero peers by raft id: the live map, read-only by contract (no copy)."""
        return self._state.zeros

    @property
    def next_raft_id(self) -> int:
        """The raft id a joining zero that asks for none is given (ids are never reused)."""
        return self._snap.next_raft_id

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
        return self._snap.zero_versions.get(raft_id, 0)

    @property
    def rebalance_enabled(self) -> bool:
        return not self._snap.rebalance_disabled

    def state_copy(self) -> zero_pb2.MembershipState:
        out: zero_pb2.MembershipState = _copy(self._state)
        return out

    def tablet(self, name: str) -> zero_pb2.Tablet | None:
        gid = self._owner.get(name)
        return _copy(self._state.groups[gid].tablets[name]) if gid else None

    def group_of(self, name: str) -> int:
        """The group owning tablet ``name``; 0 when nobody owns it."""
        return self._owner.get(name, 0)

    def member(self, member_id: int) -> zero_pb2.Member | None:
        gid = self._member_group.get(member_id)
        return _copy(self._member(member_id)) if gid else None

    def member_ids(self) -> list[int]:
        """Ids of every data-node member (from the Python index, not the protobuf maps)."""
        return list(self._member_group)

    def member_by_addr(self, addr: str) -> zero_pb2.Member | None:
        mid = self._addr_member.get(addr)
        return self.member(mid) if mid is not None else None

    def is_removed(self, member_id: int, *, zero: bool = False) -> bool:
        return member_id in (self._removed_zeros if zero else self._removed_members)

    def active_move(self) -> state_pb2.MoveRecord | None:
        active = self._moves.get(self._snap.active_move_id)
        return _copy(active) if active is not None else None

    def moves(self) -> list[state_pb2.MoveRecord]:
        return [_copy(r) for r in self._moves.values()]

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

    # ---- snapshots ----

    def snapshot(self) -> bytes:
        """Deterministic bytes: equal states give equal bytes."""
        return _framed(self._snapshot_payload())

    def _snapshot_payload(self) -> bytes:
        del self._snap.moves[:]
        self._snap.moves.extend(self._moves.values())
        del self._snap.dedup[:]
        self._snap.dedup.extend(state_pb2.DedupRecord(key=k, index=i, result=r) for k, (i, r) in self._dedup.items())
        payload = self._snap.SerializeToString(deterministic=True)
        del self._snap.moves[:]
        del self._snap.dedup[:]
        return bytes(payload)

    @classmethod
    def restore(cls, data: bytes) -> ZeroState:
        """A state from ``snapshot()`` bytes; CorruptStateError says what is wrong."""
        if len(data) < _HEADER.size:
            raise CorruptStateError(f"zero state snapshot is truncated ({len(data)} bytes)")
        magic, crc = _HEADER.unpack_from(data)
        if magic[:3] != _MAGIC[:3]:
            raise CorruptStateError("not a zero state snapshot (bad magic)")
        if magic != _MAGIC:
            raise CorruptStateError(f"zero state snapshot format {magic[3]} is not supported (want {FORMAT})")
        payload = bytes(data[_HEADER.size:])
        if zlib.crc32(payload) != crc:
            raise CorruptStateError("zero state snapshot is corrupt (CRC mismatch)")
        snap = state_pb2.ZeroStateSnapshot()
        try:
            snap.ParseFromString(payload)
        except DecodeError as e:
            raise CorruptStateError(f"zero state snapshot does not parse: {e}") from None
        if snap.format != FORMAT:
            raise CorruptStateError(f"zero state snapshot format {snap.format} is not supported")
        self = cls()
        self._snap = snap
        self._moves = {r.move_id: _copy(r) for r in snap.moves}
        self._dedup = collections.OrderedDict((r.key, (r.index, _copy(r.result))) for r in snap.dedup)
        del snap.moves[:]
        del snap.dedup[:]
        self._history_floor = self._applied_index = snap.state.version
        self._reindex()
        self._check()
        return self

    # ---- internals ----

    def _member(self, member_id: int) -> zero_pb2.Member:
        member: zero_pb2.Member = self._state.groups[self._member_group[member_id]].members[member_id]
        return member

    def _voters(self, gid: int) -> int:
        group = self._state.groups.get(gid)
        return 0 if group is None else sum(not m.learner for m in group.members.values())

    def _check_addr_free_of_zeros(self, addr: str) -> None:
        if addr in self._addr_zero:
            raise FailedPreconditionError(f"address {addr} is held by zero {self._addr_zero[addr]}")

    def _reindex(self) -> None:
        """Rebuild the lookup maps derived from the state."""
        st = self._state
        self._owner: dict[str, int] = {}
        self._member_group: dict[int, int] = {}
        self._addr_member: dict[str, int] = {}
        self._addr_zero: dict[str, int] = {z.addr: rid for rid, z in st.zeros.items()}
        for gid, group in st.groups.items():
            for name in group.tablets:
                if name in self._owner:
                    raise CorruptStateError(f"tablet {name!r} is owned by groups {self._owner[name]} and {gid}")
                self._owner[name] = gid
            for mid, m in group.members.items():
                if mid in self._member_group:
                    raise CorruptStateError(f"member {mid} is in groups {self._member_group[mid]} and {gid}")
                self._member_group[mid] = gid
                self._addr_member[m.addr] = mid
        self._removed_members = {m.id for m in st.removed if m.group_id}
        self._removed_zeros = {m.id for m in st.removed if not m.group_id}

    def _check(self) -> None:
        """Invariants a restored snapshot must satisfy."""
        st, snap = self._state, self._snap
        problems: list[str] = []

        def need(ok: bool, what: str) -> None:
            if not ok:
                problems.append(what)

        for gid, group in st.groups.items():
            need(gid != 0, "group 0 exists")
            for name, t in group.tablets.items():
                need(t.predicate == name and t.group_id == gid, f"tablet {name!r} misfiled in group {gid}")
            for mid, m in group.members.items():
                need(m.id == mid and m.group_id == gid, f"member {mid} misfiled in group {gid}")
                need(0 < mid < snap.next_member_id, f"member id {mid} not below next_member_id")
                need(mid not in self._removed_members, f"member {mid} is both present and removed")
        for rid, z in st.zeros.items():
            need(z.id == rid and z.group_id == 0, f"zero {rid} misfiled")
            need(0 < rid < snap.next_raft_id, f"zero id {rid} not below next_raft_id")
            need(rid not in self._removed_zeros, f"zero {rid} is both present and removed")
        for rid in snap.zero_versions:
            need(rid in st.zeros, f"zero {rid} has a version but is not a member")
        need(len(self._addr_member) == len(self._member_group), "two members share an address")
        need(len(self._addr_zero) == len(st.zeros), "two zeros share an address")
        active = snap.active_move_id
        for mid, r in self._moves.items():
            need(0 < mid < snap.next_move_id, f"move id {mid} not below next_move_id")
            need((r.phase == state_pb2.MOVE_COPYING) == (mid == active), f"move {mid} has phase {r.phase}")
        moving = self._moves[active].predicate if active in self._moves else None
        for gid, group in st.groups.items():
            for name, t in group.tablets.items():
                need(t.read_only == (name == moving), f"tablet {name!r} read_only={t.read_only} "
                     f"but {'it is' if name == moving else 'it is not'} being moved")
        if active:
            current = self._moves.get(active)
            need(current is not None and self._owner.get(current.predicate) == current.src_group,
                 f"active move {active} does not match its tablet")
        if problems:
            raise CorruptStateError("zero state snapshot is inconsistent: " + "; ".join(problems))


def replay(proposals: Iterable[tuple[int, state_pb2.Proposal]]) -> ZeroState:
    """A state built by applying ``(index, proposal)`` pairs, skipping refused ones."""
    state = ZeroState()
    for index, proposal in proposals:
        try:
            state.apply(index, proposal)
        except ZeroError:
            pass
    return state
