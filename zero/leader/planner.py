"""The rebalancer's planner: a pure function of the membership state and the placement
rules (docs/DESIGN.md "Placement"), the same on every zero.

One round first puts every tablet where the rules want it (a tablet whose group breaks
its rule, or whose group drains, goes to the allowed live group with the least load),
then evens out the load. A tablet's load is its share of all reported bytes plus, when
data nodes report rates, its share of all reads and writes per second; a group's load
is its tablets'. While the most and the least loaded group differ by more than
IMBALANCE of the most, the round moves the heaviest tablet of the most loaded group
that weighs at most half the difference and that the rules let live in the least loaded
one (more would only swap which group is heavier). Each such move lowers the sum of the
squared loads, so the round ends; it simulates its own moves, so a second round on its
result plans nothing. A tablet pinned where it is, read-only (moving) or backed off
(`skip`) never moves; destinations are live (`groups`), have a voting member and do not
drain. Ties break on the lower group id and the tablet name.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from zero.pb import zero_pb2
from zero.state.rules import Rule, Rules

__all__ = ["IMBALANCE", "MAX_ROUND_MOVES", "MovePlan", "Placement", "PlacementSource", "Round", "group_sizes",
           "placement_of", "plan_round", "plan_rebalance"]

IMBALANCE = 0.10  # groups within this fraction of the most loaded are balanced
MAX_ROUND_MOVES = 100_000  # a bound on one round's balancing moves (each lowers the squared loads)


@dataclass(frozen=True, slots=True)
class MovePlan:
    predicate: str
    src_group: int
    dst_group: int
    size_bytes: int
    reason: str = field(default="", compare=False)  # in words: why it moves
    fix: bool = field(default=False, compare=False)  # it puts the tablet where the rules want it


@dataclass(frozen=True, slots=True)
class Placement:
    """What the planner reads beyond the MembershipState: the rules and the draining groups."""

    rules: Rules = field(default_factory=lambda: Rules(zero_pb2.PlacementPolicy()))
    draining: frozenset[int] = frozenset()


@dataclass(slots=True)
class Round:
    moves: list[MovePlan] = field(default_factory=list)  # fixes first, then balancing; one per tablet
    blocked: dict[str, str] = field(default_factory=dict)  # tablet -> why the rules' move cannot happen
    balance: str = ""  # the load picture at the end, in words


class PlacementSource(Protocol):
    """Where the placement comes from: ZeroState."""

    @property
    def rules(self) -> Rules: ...
    def draining_groups(self) -> list[int]: ...


def placement_of(view: PlacementSource) -> Placement:
    return Placement(view.rules, frozenset(view.draining_groups()))


def group_sizes(state: zero_pb2.MembershipState) -> dict[int, int]:
    """Bytes per group (sum of its tablets' reported sizes); only groups with a voting
    member count, since only they can take a tablet."""
    return {gid: sum(t.size_bytes for t in g.tablets.values())
            for gid, g in state.groups.items() if any(not m.learner for m in g.members.values())}


class _Loads:
    """Tablet and group loads, and each group's tablets heaviest first (then by name),
    as (-load, name)."""

    def __init__(self, state: zero_pb2.MembershipState) -> None:
        tablets = [t for g in state.groups.values() for t in g.tablets.values()]
        size = sum(t.size_bytes for t in tablets) or 1
        rate = sum(t.read_rate + t.write_rate for t in tablets)
        self.of: dict[str, float] = {
            t.predicate: t.size_bytes / size + ((t.read_rate + t.write_rate) / rate if rate else 0.0)
            for t in tablets}
        self.group: dict[int, float] = {gid: 0.0 for gid in state.groups}
        self.sorted: dict[int, list[tuple[float, str]]] = {gid: [] for gid in state.groups}
        for gid, g in state.groups.items():
            self.sorted[gid] = sorted((-self.of[n], n) for n in g.tablets)
            self.group[gid] = -sum(w for w, _ in self.sorted[gid])

    def move(self, name: str, src: int, dst: int) -> None:
        w = self.of[name]
        self.sorted[src].remove((-w, name))
        bisect.insort(self.sorted[dst], (-w, name))
        self.group[src] -= w
        self.group[dst] += w


def _allowed(rule: Rule | None, gid: int, state: zero_pb2.MembershipState, draining: Collection[int]) -> bool:
    g = state.groups[gid]
    if rule is not None and not rule.group_ok(gid, g.members.values()):
        return False
    return gid not in draining or (rule is not None and rule.pin_group == gid)


def plan_round(state: zero_pb2.MembershipState, placement: Placement = Placement(), *,
               skip: Callable[[str], bool] = lambda name: False, groups: Collection[int] | None = None) -> Round:
    """The moves one round plans (at most one per tablet, to its final group)."""
    rules, draining = placement.rules, placement.draining
    live = {gid for gid, g in state.groups.items() if (groups is None or gid in groups)
            and any(not m.learner for m in g.members.values())}
    loads = _Loads(state)
    owner = {n: gid for gid, g in state.groups.items() for n in g.tablets}
    start = dict(owner)
    moving = {n for g in state.groups.values() for n, t in g.tablets.items() if t.read_only}
    out = Round()
    reasons: dict[str, str] = {}  # why each moved tablet moves
    fixes: set[str] = set()
    order: dict[str, int] = {}  # balancing moves in the order planned
    # 1. where the rules want it
    for name in sorted(owner) if (rules or draining) else ():
        gid = owner[name]
        rule = rules.rule_for(name)
        if _allowed(rule, gid, state, draining):
            continue
        why = f"{rule} is broken in group {gid}" if rule is not None and rule.binding and not \
            rule.group_ok(gid, state.groups[gid].members.values()) else f"group {gid} is draining"
        tablet = state.groups[gid].tablets[name]
        if tablet.read_only:
            out.blocked[name] = f"{why}, but it is moving now"
            continue
        if skip(name):
            out.blocked[name] = f"{why}, but it is backing off after a failed move"
            continue
        if gid not in live:
            out.blocked[name] = f"{why}, but group {gid} has no live member to copy from"
            continue
        fits = [g for g in sorted(live) if g != gid and _allowed(rule, g, state, draining)]
        if not fits:
            out.blocked[name] = f"{why}, and no live group meets it"
            continue
        dst = min(fits, key=lambda g: (loads.group[g], g))
        loads.move(name, gid, dst)
        owner[name] = dst
        reasons[name] = f"{why}: group {dst} meets it"
        fixes.add(name)
    # 2. even out the load among the live, undrained groups
    eligible = sorted(g for g in live if g not in draining)
    for _ in range(MAX_ROUND_MOVES):
        if len(eligible) < 2:
            break
        src = max(eligible, key=lambda g: (loads.group[g], -g))
        dst = min(eligible, key=lambda g: (loads.group[g], g))
        diff = loads.group[src] - loads.group[dst]
        if diff <= IMBALANCE * loads.group[src]:
            break
        # Half the difference, with room for rounding (a share of a sum is not exact).
        pick = _heaviest_fitting(loads.sorted[src], diff / 2 * (1 + 1e-9), dst, state, rules, draining,
                                 lambda n: n in moving or skip(n))
        if pick is None:
            break
        loads.move(pick, src, dst)
        owner[pick] = dst
        order.setdefault(pick, len(order))
        if pick not in fixes:
            reasons[pick] = (f"to even out the load: group {src} carries {loads.group[src] + loads.of[pick]:.1%} "
                         f"of it and group {dst} {loads.group[dst] - loads.of[pick]:.1%}")
    for name in sorted(n for n in owner if owner[n] != start[n]):
        tablet = state.groups[start[name]].tablets[name]
        out.moves.append(MovePlan(name, start[name], owner[name], tablet.size_bytes, reasons[name], name in fixes))
    out.moves.sort(key=lambda m: (0, 0, m.predicate) if m.predicate in fixes else (1, order[m.predicate], ""))
    if eligible:
        hi = max(eligible, key=lambda g: (loads.group[g], -g))
        lo = min(eligible, key=lambda g: (loads.group[g], g))
        out.balance = (f"group {hi} carries the most load ({loads.group[hi]:.1%}), group {lo} the least "
                       f"({loads.group[lo]:.1%})")
    return out


def _heaviest_fitting(tablets: list[tuple[float, str]], limit: float, dst: int, state: zero_pb2.MembershipState,
                      rules: Rules, draining: Collection[int], skip: Callable[[str], bool]) -> str | None:
    """The heaviest tablet (then the first by name) weighing at most `limit`, and more than
    nothing, that may go to `dst`."""
    for i in range(bisect.bisect_left(tablets, (-limit, "")), len(tablets)):
        neg, name = tablets[i]
        if neg >= 0:
            return None
        rule = rules.rule_for(name)
        if rule is not None and rule.pin_group:
            continue  # pinned: never moved by balancing
        if skip(name) or not _allowed(rule, dst, state, draining):
            continue
        return name
    return None


def plan_rebalance(state: zero_pb2.MembershipState, *, skip: Callable[[str], bool] = lambda name: False,
                   groups: Collection[int] | None = None, placement: Placement = Placement()) -> MovePlan | None:
    """The first move of a round (the move driver runs one at a time), or None."""
    moves = plan_round(state, placement, skip=skip, groups=groups).moves
    return moves[0] if moves else None
