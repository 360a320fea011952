"""The shard map summarized for people: at 10,000 groups and 1,000,000 tablets nobody reads
a listing of everything (27 MB), so the status page and `zero admin state` show totals,
the largest groups a page at a time, one group's tablets a page at a time, and the
tablets whose names contain a text (issue 23 goal 4).

Pure functions over the groups of a MembershipState (the live, read-only map or a copy):
no I/O. `Summaries` keeps the per-group totals between polls of a large state, so a page
polled every second does not sum a million tablet sizes every second.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from zero.pb import zero_pb2

__all__ = ["GroupTotals", "Totals", "Summaries", "group_totals", "totals", "page_of_groups", "largest_tablets",
           "tablet_page", "find_tablets", "REUSE_FACTOR"]

# Totals that took t seconds to compute are reused for up to REUSE_FACTOR * t seconds
# while the state changes: the page's share of a core stays about 1 / REUSE_FACTOR.
REUSE_FACTOR = 10


@dataclass(frozen=True, slots=True)
class GroupTotals:
    id: int
    members: int
    tablets: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Totals:
    groups: int
    members: int
    tablets: int
    size_bytes: int


def group_totals(groups: Mapping[int, zero_pb2.Group]) -> list[GroupTotals]:
    """Every group's counts and bytes, largest first (then by id)."""
    out = [GroupTotals(gid, len(g.members), len(g.tablets), sum(t.size_bytes for t in g.tablets.values()))
           for gid, g in groups.items()]
    out.sort(key=lambda s: (-s.size_bytes, -s.tablets, s.id))
    return out


def totals(per_group: Iterable[GroupTotals]) -> Totals:
    groups = members = tablets = size = 0
    for s in per_group:
        groups += 1
        members += s.members
        tablets += s.tablets
        size += s.size_bytes
    return Totals(groups, members, tablets, size)


def page_of_groups(per_group: list[GroupTotals], offset: int, limit: int) -> list[GroupTotals]:
    """Groups `offset`..`offset + limit` of the largest-first order."""
    return per_group[max(0, offset):max(0, offset) + max(0, limit)]


def largest_tablets(group: zero_pb2.Group, k: int) -> list[zero_pb2.Tablet]:
    """The `k` largest tablets of `group`, largest first (then by name)."""
    return heapq.nsmallest(k, group.tablets.values(), key=lambda t: (-t.size_bytes, t.predicate))


def tablet_page(group: zero_pb2.Group, offset: int, limit: int) -> list[zero_pb2.Tablet]:
    """Tablets `offset`..`offset + limit` of `group`, largest first (then by name)."""
    offset, limit = max(0, offset), max(0, limit)
    return largest_tablets(group, offset + limit)[offset:]


def find_tablets(groups: Mapping[int, zero_pb2.Group], text: str, limit: int) -> tuple[list[zero_pb2.Tablet], int]:
    """Tablets whose name contains `text` (case-sensitive, as names are): the first
    `limit` by name, and how many match in all."""
    found = [t for g in groups.values() for name, t in g.tablets.items() if text in name]
    return heapq.nsmallest(limit, found, key=lambda t: t.predicate), len(found)


class Summaries:
    """Per-group totals of a state that keeps changing, recomputed when the state moved
    on and the last result is older than REUSE_FACTOR times what computing it cost.
    `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._version = -1
        self._at = 0.0
        self._cost = 0.0
        self._groups: list[GroupTotals] = []

    def get(self, groups: Mapping[int, zero_pb2.Group], version: int) -> tuple[list[GroupTotals], int]:
        """(per-group totals, the state version they are of)."""
        now = self._clock()
        if version != self._version and now - self._at >= REUSE_FACTOR * self._cost:
            self._groups = group_totals(groups)
            self._cost = self._clock() - now
            self._at, self._version = now, version
        return self._groups, self._version
