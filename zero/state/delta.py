"""What an apply produced: the Delta of what it changed, and the Applied outcome.

A handler records what it changes in a Changes collector as it mutates; apply freezes
that into an immutable Delta, which the membership stream reads (a resumed stream gets
the merged deltas since its version, zero/state/machine.py's ``changes_since``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zero.pb import state_pb2, zero_pb2

__all__ = ["Delta", "Changes", "Applied", "NO_DELTA"]


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
NO_DELTA = _FLAG_DELTAS[False, False]  # the one empty Delta freeze() returns: "nothing changed"


@dataclass(slots=True)
class Changes:
    """Mutable collector a handler fills while it mutates; frozen into a Delta."""

    members: set[int] = field(default_factory=set)
    removed_members: set[int] = field(default_factory=set)
    zeros: set[int] = field(default_factory=set)
    removed_zeros: set[int] = field(default_factory=set)
    tablets: set[str] = field(default_factory=set)
    removed_tablets: set[str] = field(default_factory=set)  # deleted (DeleteTablet)
    header: bool = False
    settings: bool = False

    def freeze(self) -> Delta:
        if not (self.members or self.removed_members or self.zeros or self.removed_zeros or self.tablets
                or self.removed_tablets):
            # The common case (leases: only the header moved) shares one immutable Delta.
            return _FLAG_DELTAS[self.header, self.settings]
        return Delta(frozenset(self.members), frozenset(self.removed_members),
                     frozenset(self.zeros), frozenset(self.removed_zeros),
                     frozenset(self.tablets), frozenset(self.removed_tablets), self.header, self.settings)


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
