"""The replicated state's data as the apply handlers see it: the snapshot message, the
move records, and lookup indexes derived from them.

ZeroState (zero/state/machine.py) owns one Tables and hands it to the handler of each
proposal (members.py, zeros.py, tablets.py, moves.py, leases.py, cluster.py). The
indexes are derived data: `reindex()` rebuilds them from the snapshot, and every
handler that changes the snapshot keeps them in step, so they are never serialized.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from typing import TypeVar

from google.protobuf.message import Message

from zero.errors import CorruptStateError, FailedPreconditionError
from zero.pb import state_pb2, zero_pb2
from zero.state.oracle import OracleState
from zero.state.rules import Rules
from zero.state.spread import SpreadIndex

__all__ = ["Tables", "RoomIndex", "copy", "UINT64_MAX", "UINT32_MAX"]

_NO_SETTINGS = state_pb2.GroupSettings()

UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1

M = TypeVar("M", bound=Message)


def copy(msg: M) -> M:
    """A deep copy of a protobuf message: readers get copies, never the live state."""
    out = type(msg)()
    out.CopyFrom(msg)
    return out


class RoomIndex:
    """Data-node groups by their number of voting members, so Connect picks "the lowest
    group id with fewer than ``replicas`` voters" without scanning every group (issue 23).

    ``replicas`` travels in each ConnectMember (the proposer's --replicas), so "room" is
    a question asked with a bound, not a fixed set: groups are bucketed by voter count,
    and the answer is the smallest id among the buckets below the bound. Each bucket is
    a min-heap of group ids with lazy deletion: an entry is live while ``count[gid]``
    still equals the bucket's count. A Connect costs O(distinct voter counts + log
    groups) amortized; with uniform --replicas R there are at most R + 1 counts.

    Invariants: ``count`` has every group (groups are never deleted); ``live[n]`` is the
    number of groups with n voters and has no zero entries; ``buckets[n]`` holds every
    group with n voters (and maybe stale entries, at most 2 * live[n] + SLACK of them);
    ``top`` is the highest group id, 0 with none.
    """

    SLACK = 16

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.live: dict[int, int] = {}
        self.buckets: dict[int, list[int]] = {}
        self.top = 0

    def set(self, gid: int, voters: int) -> None:
        """Group ``gid`` (new or not) now has ``voters`` voting members."""
        old = self.count.get(gid)
        if old == voters:
            return
        self.count[gid] = voters
        self.top = max(self.top, gid)
        if old is not None:
            self.live[old] -= 1
            if not self.live[old]:
                del self.live[old], self.buckets[old]
            else:
                self._compact(old)
        self.live[voters] = self.live.get(voters, 0) + 1
        heapq.heappush(self.buckets.setdefault(voters, []), gid)
        self._compact(voters)

    def _compact(self, n: int) -> None:
        heap = self.buckets[n]
        if len(heap) > 2 * self.live[n] + self.SLACK:
            count = self.count
            heap[:] = sorted({g for g in heap if count[g] == n})

    def first_with_room(self, replicas: int) -> int | None:
        """The lowest group id with fewer than ``replicas`` voters; None if there is none."""
        best: int | None = None
        count = self.count
        for n, heap in self.buckets.items():
            if n >= replicas:
                continue
            while count[heap[0]] != n:  # a live entry exists (live[n] > 0): this ends
                heapq.heappop(heap)
            if best is None or heap[0] < best:
                best = heap[0]
        return best


class Tables:
    """The snapshot (MembershipState plus counters and settings), the move records by
    id, the oracle's state, and the indexes apply needs to answer in O(1).

    Invariants (checked on restore, zero/state/snapshot.py): every tablet is in exactly
    one group (`owner`), every member in exactly one group (`member_group`), an address
    names at most one member or zero, and removed ids are never present again.
    """

    def __init__(self, snap: state_pb2.ZeroStateSnapshot) -> None:
        """Takes `snap` over; its move records move out of it into `moves`."""
        self.snap = snap
        self.moves: dict[int, state_pb2.MoveRecord] = {r.move_id: copy(r) for r in snap.moves}  # ascending id
        del snap.moves[:]
        try:
            self.oracle = OracleState.from_proto(snap.oracle)  # lives outside the message too
        except ValueError as e:
            raise CorruptStateError(str(e)) from None
        snap.ClearField("oracle")
        self.owner: dict[str, int] = {}  # tablet -> group
        self.member_group: dict[int, int] = {}  # data-node id -> group
        self.addr_member: dict[str, int] = {}
        self.addr_zero: dict[str, int] = {}
        self.removed_members: set[int] = set()
        self.removed_zeros: set[int] = set()
        self.room = RoomIndex()  # groups by voter count
        self.rules = Rules(snap.placement)  # the placement policy, compiled
        self._spread: SpreadIndex | None = None  # built when a Connect first asks
        self.reindex()

    @property
    def state(self) -> zero_pb2.MembershipState:
        return self.snap.state

    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]:
        return self.snap.state.groups

    def active_move(self) -> state_pb2.MoveRecord | None:
        """The move in MOVE_COPYING, the live record (there is at most one)."""
        return self.moves.get(self.snap.active_move_id)

    def group_of(self, name: str) -> int:
        """The group owning tablet ``name``; 0 when nobody owns it."""
        return self.owner.get(name, 0)

    def member(self, member_id: int) -> zero_pb2.Member:
        """The live record of a present data node (KeyError if it is not one)."""
        member: zero_pb2.Member = self.state.groups[self.member_group[member_id]].members[member_id]
        return member

    def voters(self, gid: int) -> int:
        """Voting members of group ``gid`` (0 for a group that does not exist)."""
        return self.room.count.get(gid, 0)

    def settings(self, gid: int) -> state_pb2.GroupSettings:
        """Group `gid`'s settings (a default message when it has none; do not mutate)."""
        got = self.snap.group_settings.get(gid)
        return got if got is not None else _NO_SETTINGS

    def draining(self, gid: int) -> bool:
        return self.settings(gid).draining

    def size(self, gid: int, replicas: int) -> int:
        """The voting members group `gid` should have: its own size, else `replicas`."""
        return self.settings(gid).replicas or replicas

    def spread(self, replicas: int) -> SpreadIndex:
        """The index of groups with room for a new member, for this --replicas."""
        label = self.rules.spread_label
        idx = self._spread
        if idx is None or idx.replicas != replicas or idx.label != label:
            idx = self._spread = SpreadIndex(label, replicas, self._group_facts, list(self.state.groups))
        return idx

    def group_changed(self, gid: int) -> None:
        """Keep the derived group indexes in step after group `gid`'s members or settings
        changed (the RoomIndex's voter count is kept by the caller)."""
        if self._spread is not None:
            self._spread.update(gid)

    def set_rules(self, rules: Rules) -> None:
        self.rules = rules
        self._spread = None  # the spread label may have changed

    def _group_facts(self, gid: int) -> tuple[int, int, bool, Counter[str]]:
        group = self.state.groups.get(gid)
        label = self.rules.spread_label
        vals: Counter[str] = Counter()
        if group is not None and label is not None:
            vals.update(m.labels[label] for m in group.members.values() if label in m.labels)
        settings = self.settings(gid)
        return self.voters(gid), settings.replicas, settings.draining, vals

    def check_addr_free_of_zeros(self, addr: str) -> None:
        if addr in self.addr_zero:
            raise FailedPreconditionError(f"address {addr} is held by zero {self.addr_zero[addr]}")

    def reindex(self) -> None:
        """Rebuild the lookup maps derived from the state."""
        st = self.state
        self._spread = None
        self.owner = {}
        self.member_group = {}
        self.addr_member = {}
        self.addr_zero = {z.addr: rid for rid, z in st.zeros.items()}
        self.room = RoomIndex()
        for gid, group in st.groups.items():
            self.room.set(gid, sum(not m.learner for m in group.members.values()))
            for name in group.tablets:
                if name in self.owner:
                    raise CorruptStateError(f"tablet {name!r} is owned by groups {self.owner[name]} and {gid}")
                self.owner[name] = gid
            for mid, m in group.members.items():
                if mid in self.member_group:
                    raise CorruptStateError(f"member {mid} is in groups {self.member_group[mid]} and {gid}")
                self.member_group[mid] = gid
                self.addr_member[m.addr] = mid
        self.removed_members = {m.id for m in st.removed if m.group_id}
        self.removed_zeros = {m.id for m in st.removed if not m.group_id}
