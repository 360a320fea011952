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
IMBALANCE_DIVISOR = 10  # the same, for exact integer comparisons
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
    """Tablet and group loads, and each group's tablets by placement class, heaviest
    first (then by name), as (-load, name).

    Loads are exact integers, so every zero and every round computes the same: a
    tablet's share of the bytes plus its share of the operations, size/S + ops/R, scaled
    by S * R to size * R + ops * S (ops in thousandths per second); with no rates
    reported, the size alone. A placement class is the set of groups a tablet's rule
    allows: balancing asks only the classes that allow the destination."""

    def __init__(self, names: list[str], gids: list[int], sizes: list[int], ops: list[int],
                 spans: dict[int, tuple[int, int]], cls: dict[str, int]) -> None:
        """Parallel lists: each tablet's name, group, bytes and operations (thousandths per
        second), grouped: group g's tablets are at names[spans[g][0]:spans[g][1]]."""
        size, rate = sum(sizes), sum(ops)
        if rate and size:
            weights = [b * rate + o * size for b, o in zip(sizes, ops)]
        else:
            weights = [b or o for b, o in zip(sizes, ops)]
        self.of = dict(zip(names, weights))
        self.total = sum(weights) or 1
        self.cls = cls
        self.group: dict[int, int] = {gid: sum(weights[a:b]) for gid, (a, b) in spans.items()}
        self.where: dict[str, int] = dict(zip(names, gids))  # where each tablet is now (move() keeps it)
        self._names, self._spans = names, spans
        # A group's sorted lists are built when balancing first takes from it.
        self._built: dict[int, dict[int, list[tuple[int, str]]]] = {}
        self._moved_in: dict[int, set[str]] = {}

    def lists_of(self, gid: int) -> dict[int, list[tuple[int, str]]]:
        """Group `gid`'s tablets by placement class, each list heaviest first."""
        got = self._built.get(gid)
        if got is None:
            where, of, cls = self.where, self.of, self.cls
            a, b = self._spans.get(gid, (0, 0))
            names = {n for n in self._names[a:b] if where[n] == gid}
            names.update(n for n in self._moved_in.pop(gid, ()) if where[n] == gid)
            got = {}
            for n in names:
                got.setdefault(cls[n], []).append((-of[n], n))
            for lst in got.values():
                lst.sort()
            self._built[gid] = got
        return got

    def move(self, name: str, src: int, dst: int) -> None:
        w, c = self.of[name], self.cls[name]
        self.where[name] = dst
        built = self._built.get(src)
        if built is not None:
            lst = built[c]
            del lst[bisect.bisect_left(lst, (-w, name))]
        built = self._built.get(dst)
        if built is not None:
            bisect.insort(built.setdefault(c, []), (-w, name))
        else:
            self._moved_in.setdefault(dst, set()).add(name)
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
    # One pass over the tablets. Placement classes: the groups each rule allows (class
    # 0: any tablet no binding rule matches), and those its rule alone allows (`meets`).
    everyone = frozenset(g for g in state.groups if g not in draining)
    allowed: list[frozenset[int]] = [everyone]
    meets: list[frozenset[int]] = [frozenset(state.groups)]
    class_rule: list[Rule | None] = [None]
    names: list[str] = []
    gids: list[int] = []
    sizes: list[int] = []
    ops: list[int] = []
    moving: set[str] = set()
    spans: dict[int, tuple[int, int]] = {}
    for gid, g in state.groups.items():
        first = len(names)
        for t in g.tablets.values():
            n = t.predicate
            names.append(n)
            gids.append(gid)
            sizes.append(t.size_bytes)
            rates = t.read_rate + t.write_rate
            ops.append(round(rates * 1000) if rates else 0)
            if t.read_only:
                moving.add(n)
        spans[gid] = (first, len(names))
    class_of_index: dict[int, int] = {0: 0}  # rule index (0: none) -> class
    indexes = [0 if r is None else r.index for r in rules.match_all(names)] if rules else [0] * len(names)
    for i in set(indexes) - {0}:
        rule = rules.rules[i - 1]
        if not rule.binding:
            class_of_index[i] = 0
            continue
        class_of_index[i] = len(allowed)
        allowed.append(frozenset(x for x in state.groups if _allowed(rule, x, state, draining)))
        meets.append(frozenset(x for x in state.groups if rule.group_ok(x, state.groups[x].members.values())))
        class_rule.append(rule)
    cls = dict(zip(names, [class_of_index[i] for i in indexes]))
    loads = _Loads(names, gids, sizes, ops, spans, cls)
    owner = loads.where  # updated by loads.move
    start: dict[str, int] = {}  # where each moved tablet was
    out = Round()
    reasons: dict[str, str] = {}  # why each moved tablet moves
    fixes: set[str] = set()
    order: dict[str, int] = {}  # balancing moves in the order planned
    # 1. where the rules want it
    misplaced = sorted(n for n, gid in owner.items() if gid not in allowed[cls[n]]) if (rules or draining) else []
    for name in misplaced:
        gid = owner[name]
        c = cls[name]
        why = f"{class_rule[c]} is broken in group {gid}" if gid not in meets[c] else f"group {gid} is draining"
        if name in moving:
            out.blocked[name] = f"{why}, but it is moving now"
            continue
        if skip(name):
            out.blocked[name] = f"{why}, but it is backing off after a failed move"
            continue
        if gid not in live:
            out.blocked[name] = f"{why}, but group {gid} has no live member to copy from"
            continue
        fits = [g for g in allowed[c] if g in live and g != gid]
        if not fits:
            out.blocked[name] = f"{why}, and no live group meets it"
            continue
        dst = min(fits, key=lambda g: (loads.group[g], g))
        start.setdefault(name, gid)
        loads.move(name, gid, dst)
        reasons[name] = f"{why}: group {dst} meets it"
        fixes.add(name)
    # 2. even out the load among the live, undrained groups
    eligible = sorted(g for g in live if g not in draining)
    classes_for = {g: [c for c, a in enumerate(allowed) if g in a] for g in eligible}
    blocked = lambda n: n in moving or skip(n)  # noqa: E731
    for _ in range(MAX_ROUND_MOVES):
        if len(eligible) < 2:
            break
        src = max(eligible, key=lambda g: (loads.group[g], -g))
        dst = min(eligible, key=lambda g: (loads.group[g], g))
        diff = loads.group[src] - loads.group[dst]
        if diff * IMBALANCE_DIVISOR <= loads.group[src]:
            break
        pick = _heaviest_fitting(loads, src, classes_for[dst], diff // 2, blocked)
        if pick is None:
            break
        start.setdefault(pick, src)
        loads.move(pick, src, dst)
        order.setdefault(pick, len(order))
        if pick not in fixes:
            reasons[pick] = (f"to even out the load: group {src} carries "
                             f"{(loads.group[src] + loads.of[pick]) / loads.total:.1%} of it and group {dst} "
                             f"{(loads.group[dst] - loads.of[pick]) / loads.total:.1%}")
    for name in sorted(n for n in start if owner[n] != start[n]):
        tablet = state.groups[start[name]].tablets[name]
        out.moves.append(MovePlan(name, start[name], owner[name], tablet.size_bytes, reasons[name], name in fixes))
    out.moves.sort(key=lambda m: (0, 0, m.predicate) if m.predicate in fixes else (1, order[m.predicate], ""))
    if eligible:
        hi = max(eligible, key=lambda g: (loads.group[g], -g))
        lo = min(eligible, key=lambda g: (loads.group[g], g))
        out.balance = (f"group {hi} carries the most load ({loads.group[hi] / loads.total:.1%}), group {lo} "
                       f"the least ({loads.group[lo] / loads.total:.1%})")
    return out


def _heaviest_fitting(loads: _Loads, src: int, classes: list[int], limit: int,
                      blocked: Callable[[str], bool]) -> str | None:
    """The heaviest tablet of group `src` (then the first by name) weighing at most
    `limit`, and more than nothing, among the placement classes that allow the
    destination; not pinned where it is, moving or backed off."""
    best: tuple[int, str] | None = None
    lists = loads.lists_of(src)
    for c in classes:
        lst = lists.get(c)
        if not lst:
            continue
        for i in range(bisect.bisect_left(lst, (-limit, "")), len(lst)):
            entry = lst[i]
            if entry[0] >= 0 or (best is not None and entry >= best):
                break
            if not blocked(entry[1]):
                best = entry
                break
    return best[1] if best is not None else None


def plan_rebalance(state: zero_pb2.MembershipState, *, skip: Callable[[str], bool] = lambda name: False,
                   groups: Collection[int] | None = None, placement: Placement = Placement()) -> MovePlan | None:
    """The first move of a round (the move driver runs one at a time), or None."""
    moves = plan_round(state, placement, skip=skip, groups=groups).moves
    return moves[0] if moves else None
