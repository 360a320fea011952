"""The replicated state's data as the apply handlers see it: the snapshot message, the
move records, and lookup indexes derived from them.

ZeroState (zero/state/machine.py) owns one Tables and hands it to the handler of each
proposal (members.py, zeros.py, tablets.py, moves.py, leases.py, cluster.py). The
indexes are derived data: `reindex()` rebuilds them from the snapshot, and every
handler that changes the snapshot keeps them in step, so they are never serialized.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from google.protobuf.message import Message

from zero.errors import CorruptStateError, FailedPreconditionError
from zero.pb import state_pb2, zero_pb2
from zero.state.oracle import OracleState

__all__ = ["Tables", "copy", "UINT64_MAX", "UINT32_MAX"]

UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1

M = TypeVar("M", bound=Message)


def copy(msg: M) -> M:
    """A deep copy of a protobuf message: readers get copies, never the live state."""
    out = type(msg)()
    out.CopyFrom(msg)
    return out


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
        group = self.state.groups.get(gid)
        return 0 if group is None else sum(not m.learner for m in group.members.values())

    def check_addr_free_of_zeros(self, addr: str) -> None:
        if addr in self.addr_zero:
            raise FailedPreconditionError(f"address {addr} is held by zero {self.addr_zero[addr]}")

    def reindex(self) -> None:
        """Rebuild the lookup maps derived from the state."""
        st = self.state
        self.owner = {}
        self.member_group = {}
        self.addr_member = {}
        self.addr_zero = {z.addr: rid for rid, z in st.zeros.items()}
        for gid, group in st.groups.items():
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
