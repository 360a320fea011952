"""The groups a new data node may join, by the value of its spread label (issue 20).

A new member joins the lowest group with room whose members lack its spread-label
value (a member without that label: the lowest group with room), else opens a new
group. "Room" is: fewer voting members than the group's size (its SetGroupReplicas
size, else the proposer's --replicas) and not draining.

`SpreadIndex` answers that without scanning the groups (labelled Connects stay O(1)
amortized, issue 23's scale): the groups with room in a min-heap, and per spread value
asked for, a min-heap of the groups with room that lack it. Entries are deleted lazily
(an entry is live while the group still has room and still lacks the value) and
compacted when stale ones outnumber live ones. A group that gains room is pushed onto
every value's heap: O(values asked for), a handful of zones. It is derived data: the
state rebuilds it on restore, when the spread label changes, and when a Connect brings a
different --replicas; tests compare it with a full scan.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable

__all__ = ["SpreadIndex", "GroupFacts"]

# group id -> (voters, its own size (0 = --replicas), draining, its members' spread values)
GroupFacts = Callable[[int], tuple[int, int, bool, Counter[str]]]

_SLACK = 16


class SpreadIndex:
    def __init__(self, label: str | None, replicas: int, facts: GroupFacts, groups: list[int]) -> None:
        self.label = label
        self.replicas = replicas
        self._facts = facts
        self.room: set[int] = set()
        self.values: dict[int, Counter[str]] = {}
        self._heap: list[int] = []
        self._lacking: dict[str, list[int]] = {}
        for gid in groups:
            self.update(gid)

    def update(self, gid: int) -> None:
        """Group `gid` changed (a member came or went, its size or drain changed)."""
        voters, own_size, draining, vals = self._facts(gid)
        size = own_size or self.replicas
        had, old = gid in self.room, self.values.get(gid, Counter())
        self.values[gid] = vals
        if voters < size and not draining:
            if not had:
                self.room.add(gid)
                heapq.heappush(self._heap, gid)
                self._maybe_compact_all()
                for v, heap in self._lacking.items():
                    if not vals[v]:
                        heapq.heappush(heap, gid)
                        self._maybe_compact(v)
            else:
                for v in old:
                    if not vals[v] and v in self._lacking:
                        heapq.heappush(self._lacking[v], gid)
                        self._maybe_compact(v)
        else:
            self.room.discard(gid)

    def choose(self, value: str | None) -> int | None:
        """The lowest group with room lacking `value` (None: the lowest with room)."""
        room = self.room
        if value is None:
            heap = self._heap
            while heap and heap[0] not in room:
                heapq.heappop(heap)
            return heap[0] if heap else None
        lacking = self._lacking.get(value)
        if lacking is None:
            lacking = self._lacking[value] = sorted(g for g in room if not self.values[g][value])
        values = self.values
        while lacking and (lacking[0] not in room or values[lacking[0]][value]):
            heapq.heappop(lacking)
        return lacking[0] if lacking else None

    def _maybe_compact_all(self) -> None:
        if len(self._heap) > 2 * len(self.room) + _SLACK:
            self._heap = sorted(self.room)

    def _maybe_compact(self, value: str) -> None:
        heap = self._lacking[value]
        if len(heap) > 2 * len(self.room) + _SLACK:
            self._lacking[value] = sorted({g for g in heap if g in self.room and not self.values[g][value]})
