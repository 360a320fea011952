"""The rebalancer's planner: a pure function of the membership state, as Dgraph Zero's.

Group sizes are the sums of the tablet sizes the data nodes report. When the largest
and the smallest group differ by more than IMBALANCE of the largest, the plan moves the
largest tablet of the largest group that is at most half the difference to the
smallest group (more would only swap which group is larger). Ties break on the lower
group id and the tablet name: the same state gives the same plan on every zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zero.pb import zero_pb2

__all__ = ["IMBALANCE", "MovePlan", "group_sizes", "plan_rebalance"]

IMBALANCE = 0.10  # groups within this fraction of the largest are balanced


@dataclass(frozen=True, slots=True)
class MovePlan:
    predicate: str
    src_group: int
    dst_group: int
    size_bytes: int


def group_sizes(state: zero_pb2.MembershipState) -> dict[int, int]:
    """Bytes per group (sum of its tablets' reported sizes); only groups with a voting
    member count, since only they can take a tablet."""
    return {gid: sum(t.size_bytes for t in g.tablets.values())
            for gid, g in state.groups.items() if any(not m.learner for m in g.members.values())}


def plan_rebalance(state: zero_pb2.MembershipState, *, skip: Callable[[str], bool] = lambda name: False,
                   groups: set[int] | None = None) -> MovePlan | None:
    """The next move that evens out group sizes, or None. `skip(name)` excludes tablets
    (backed off); `groups`, when given, limits planning to those groups (the live ones).
    Ties break on the lower group id and the tablet name: same input, same plan."""
    sizes = {g: s for g, s in group_sizes(state).items() if groups is None or g in groups}
    if len(sizes) < 2:
        return None
    src = max(sizes, key=lambda g: (sizes[g], -g))
    dst = min(sizes, key=lambda g: (sizes[g], g))
    diff = sizes[src] - sizes[dst]
    if diff <= IMBALANCE * sizes[src]:
        return None
    best: zero_pb2.Tablet | None = None
    for name in sorted(state.groups[src].tablets):
        t = state.groups[src].tablets[name]
        if t.read_only or t.size_bytes <= 0 or t.size_bytes > diff // 2 or skip(name):
            continue
        if best is None or t.size_bytes > best.size_bytes:
            best = t
    if best is None:
        return None
    return MovePlan(best.predicate, src, dst, best.size_bytes)
