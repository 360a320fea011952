"""Placement in words: why a tablet is where it is, which rule applies and whether it
holds, and what the rebalancer would do with it and why, or why not (ExplainPlacement,
`zero admin explain`, SetPlacement's dry run and GetPlacement's status lines).

Pure: it reads a state view, the leader's facts (which groups are live, which tablets
back off and since when, whether rebalancing is on) and a planned round
(zero/leader/planner.py), and returns sentences.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from zero.leader.planner import IMBALANCE, Round
from zero.pb import state_pb2, zero_pb2
from zero.state.rules import Rule, Rules

__all__ = ["Facts", "ExplainView", "explain", "policy_status"]


class ExplainView(Protocol):
    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]: ...
    @property
    def rules(self) -> Rules: ...
    def draining(self, gid: int) -> bool: ...
    def active_move(self) -> state_pb2.MoveRecord | None: ...


@dataclass(frozen=True, slots=True)
class Facts:
    """The leader's view beside the replicated state."""

    live: Collection[int]  # groups with a live voting member
    failed_ago: Callable[[str], float | None]  # seconds since a backed-off tablet's failed move
    rebalance_enabled: bool


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _group_words(view: ExplainView, gid: int, facts: Facts) -> str:
    g = view.groups.get(gid)
    if g is None:
        return f"group {gid} does not exist"
    labels = sorted({f"{k}={v}" for m in g.members.values() for k, v in m.labels.items()})
    state = "live" if gid in facts.live else "no live member"
    drain = ", draining" if view.draining(gid) else ""
    return f"group {gid} ({len(g.members)} members{', ' + ' '.join(labels) if labels else ''}; {state}{drain})"


def _rule_words(view: ExplainView, rule: Rule | None, gid: int) -> tuple[str, bool]:
    if rule is None:
        return "no placement rule matches it: it may live in any group", True
    if not rule.binding:
        return f"{rule} applies: it may live in any group", True
    g = view.groups.get(gid)
    ok = g is not None and rule.group_ok(gid, g.members.values())
    if ok:
        return f"{rule} applies and holds", True
    if rule.pin_group:
        return f"{rule} applies and does not hold: it is in group {gid}", False
    bad = sorted({f"{c}" for m in (g.members.values() if g else ()) for c in rule.constraints
                  if not c.holds(m.labels)})
    return f"{rule} applies and does not hold in group {gid} (its members break {', '.join(bad)})", False


def explain(view: ExplainView, name: str, rnd: Round, facts: Facts) -> zero_pb2.PlacementExplanation:
    """Why tablet `name` is where it is, and what would move it."""
    out = zero_pb2.PlacementExplanation(tablet=zero_pb2.Tablet(predicate=name))
    reasons = out.reasons
    gid = next((g for g, grp in view.groups.items() if name in grp.tablets), 0)
    rule = view.rules.rule_for(name)
    if not gid:
        reasons.append(f"tablet {name!r} is not served by any group; a claim would be placed by the rules")
        if rule is not None:
            reasons.append(f"{rule} would apply")
        return out
    tablet = view.groups[gid].tablets[name]
    out.tablet.CopyFrom(tablet)
    load = f"{tablet.size_bytes:,} bytes"
    if tablet.read_rate or tablet.write_rate:
        load += f", {tablet.read_rate:g} reads/s, {tablet.write_rate:g} writes/s"
    reasons.append(f"tablet {name!r} is served by {_group_words(view, gid, facts)}; {load}")
    words, holds = _rule_words(view, rule, gid)
    reasons.append(words)
    if holds and rule is not None and rule.binding and not rule.pin_group:
        meeting = [g for g in sorted(view.groups) if rule.group_ok(g, view.groups[g].members.values())]
        if not any(g in facts.live for g in meeting):
            reasons.append("no live group meets it now")
    drained = view.draining(gid) and not (rule is not None and rule.pin_group == gid)
    if drained:
        reasons.append(f"group {gid} is draining: the tablet is to be moved away")
    out.satisfied = holds and not drained
    active = view.active_move()
    if active is not None and active.predicate == name:
        reasons.append(f"it is moving now to group {active.dst_group} (move {active.move_id})")
        return out
    ago = facts.failed_ago(name)
    if ago is not None:
        reasons.append(f"the rebalancer leaves it alone: backing off after a failed move {_ago(ago)}")
        return out
    plan = next((m for m in rnd.moves if m.predicate == name), None)
    if plan is not None:
        out.target_group = plan.dst_group
        how = "the rules' moves run now" if plan.fix else (
            "when rebalancing runs" if facts.rebalance_enabled else "when rebalancing is turned on or run now")
        reasons.append(f"the rebalancer would move it to group {plan.dst_group} ({how}): {plan.reason}")
    elif name in rnd.blocked:
        reasons.append(f"blocked: {rnd.blocked[name]}")
    elif rule is not None and rule.pin_group == gid:
        reasons.append(f"the rebalancer never moves it: it is pinned to group {gid}")
    else:
        reasons.append(f"the rebalancer would leave it: groups are within {IMBALANCE:.0%} of each other, or no "
                       f"move of it would even them out ({rnd.balance or 'no other live group'})")
    return out


def policy_status(view: ExplainView, facts: Facts) -> list[str]:
    """One line per rule: whether it holds for every tablet it matches, and if not where."""
    rules = view.rules
    if not rules:
        return ["no placement rules: tablets may live in any group"]
    broken: dict[int, list[str]] = {}
    matched: dict[int, int] = {}
    for gid in sorted(view.groups):
        for name in view.groups[gid].tablets:
            rule = rules.rule_for(name)
            if rule is None:
                continue
            matched[rule.index] = matched.get(rule.index, 0) + 1
            g = view.groups[gid]
            if rule.binding and not rule.group_ok(gid, g.members.values()):
                broken.setdefault(rule.index, []).append(f"{name!r} in group {gid}")
    lines = []
    for rule in rules.rules:
        n = matched.get(rule.index, 0)
        line = f"{rule}: matches {n} tablet{'s' if n != 1 else ''}"
        if rule.binding and not rule.pin_group:
            meeting = [g for g in sorted(view.groups) if rule.group_ok(g, view.groups[g].members.values())]
            live = [g for g in meeting if g in facts.live]
            if not live:
                line += "; unsatisfied: no live group meets it"
            else:
                line += f"; groups meeting it: {', '.join(map(str, live))}"
        bad = broken.get(rule.index)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            line += f"; broken for {shown}"
        elif n:
            line += "; holds"
        lines.append(line)
    return lines
