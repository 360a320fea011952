"""Placement in the replicated state: the policy (SetPlacement), each group's size and
drain (SetGroupReplicas, DrainGroup), and the one rule every change of ownership obeys
(`check_allowed`, `place`): claims, forced assignments and moves (docs/DESIGN.md
"Placement").

The policy is stored in the snapshot with `version` = the Raft index that set it, so
`SetPlacement` with a version is a compare-and-set decided by apply. Which moves a new
policy needs is the leader's business (zero/leader/placement.py); apply only records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import rules as rules_mod
from zero.state.delta import Changes
from zero.state.rules import Rule, Rules
from zero.state.tables import Tables, copy

__all__ = ["MAX_GROUP_REPLICAS", "PlacementView", "check_allowed", "place", "set_placement", "stale_version",
           "set_group_replicas", "drain_group", "surplus"]

MAX_GROUP_REPLICAS = 7


class PlacementView(Protocol):
    """What the placement checks read: ZeroState's readers, and the Tables apply mutates."""

    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]: ...
    @property
    def rules(self) -> Rules: ...
    def draining(self, gid: int) -> bool: ...


def violation(view: PlacementView, name: str, gid: int) -> tuple[Rule | None, str] | None:
    """Why tablet `name` may not live in group `gid` (the rule, and the words), or None."""
    rule = view.rules.rule_for(name)
    if rule is not None and rule.binding:
        group = view.groups.get(gid)
        if not rule.group_ok(gid, group.members.values() if group is not None else ()):
            return rule, f"{rule} does not allow group {gid}"
    if view.draining(gid) and not (rule is not None and rule.pin_group == gid):
        return None, f"group {gid} is draining; it takes no new tablets"
    return None


def check_allowed(view: PlacementView, name: str, gid: int) -> None:
    """FailedPreconditionError naming the rule when tablet `name` may not go to `gid`."""
    why = violation(view, name, gid)
    if why is not None:
        raise FailedPreconditionError(f"tablet {name!r}: {why[1]}")


def place(view: PlacementView, name: str, gid: int) -> int:
    """Where a claim of tablet `name` by group `gid` is placed: `gid` when the rules
    allow it; else the group the rule pins it to; else the lowest group with a voting
    member that the rules allow; else (nothing allows it) `gid`, unsatisfied."""
    if violation(view, name, gid) is None:
        return gid
    rule = view.rules.rule_for(name)
    if rule is not None and rule.pin_group and rule.pin_group in view.groups:
        return rule.pin_group
    for other in sorted(view.groups):
        group = view.groups[other]
        if any(not m.learner for m in group.members.values()) and violation(view, name, other) is None:
            return other
    return gid


def stale_version(current: int, asked: int) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"the placement policy is at version {current}, not {asked}: it changed meanwhile; "
        f"get it again and reapply your change")


def set_placement(t: Tables, s: state_pb2.SetPlacement, index: int, ch: Changes) -> state_pb2.ProposalResult:
    policy = s.policy
    current = t.snap.placement.version
    if policy.version and policy.version != current:
        raise stale_version(current, policy.version)
    if policy.dry_run or policy.status or policy.moves:
        raise InvalidArgumentError("a proposed policy carries only rules, spread_label and version")
    rules_mod.check_policy(policy, t.state.groups)
    t.snap.placement.CopyFrom(zero_pb2.PlacementPolicy(
        rules=policy.rules, spread_label=policy.spread_label, version=index))
    t.set_rules(rules_mod.Rules(t.snap.placement))
    ch.settings = True
    return state_pb2.ProposalResult(policy=copy(t.snap.placement))


def _group(t: Tables, gid: int) -> zero_pb2.Group:
    if not gid:
        raise InvalidArgumentError("group_id is 0; name a data-node group")
    group = t.state.groups.get(gid)
    if group is None:
        raise NotFoundError(f"group {gid} does not exist")
    return group


def surplus(group: zero_pb2.Group, size: int) -> list[int]:
    """The members to remove, in order, when the group has more voting members than
    `size`: its learners first, then the voters beyond the size (the newest, highest id,
    first). Empty when it has no more voters than its size."""
    voters = sorted((m.id for m in group.members.values() if not m.learner), reverse=True)
    extra = len(voters) - size
    if extra <= 0:
        return []
    learners = sorted(m.id for m in group.members.values() if m.learner)
    return learners + voters[:extra]


def set_group_replicas(t: Tables, s: state_pb2.SetGroupReplicas, index: int,
                       ch: Changes) -> state_pb2.ProposalResult:
    _group(t, s.group_id)
    if not 1 <= s.replicas <= MAX_GROUP_REPLICAS:
        raise InvalidArgumentError(f"replicas {s.replicas} must be between 1 and {MAX_GROUP_REPLICAS}")
    if t.settings(s.group_id).replicas != s.replicas:
        t.snap.group_settings[s.group_id].replicas = s.replicas
        t.group_changed(s.group_id)
        ch.settings = True
    return state_pb2.ProposalResult(group=copy(t.settings(s.group_id)))


def drain_group(t: Tables, d: state_pb2.DrainGroup, index: int, ch: Changes) -> state_pb2.ProposalResult:
    _group(t, d.group_id)
    if t.draining(d.group_id) == d.undrain:
        t.snap.group_settings[d.group_id].draining = not d.undrain
        t.group_changed(d.group_id)
        ch.settings = True
    return state_pb2.ProposalResult(group=copy(t.settings(d.group_id)))
