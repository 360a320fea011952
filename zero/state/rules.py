"""Placement rules: which groups may serve a tablet (docs/DESIGN.md "Placement").

A PlacementPolicy is an ordered list of rules; the first whose glob matches a tablet's
name applies. A rule pins its tablets to one group (`pin_group`), or constrains them
to groups whose members all satisfy its label constraints ("zone=a": label zone is a;
"!disk=hdd": it is not hdd), or, with neither, lets them live anywhere (an exception
before broader rules). `Rules` is the compiled, immutable form the state keeps.

Matching is the hot part (the planner asks for every tablet): globs are indexed by
their literal prefix, so a name is tried only against the rules whose prefix it starts
with (and those without one), and answers are memoised per compiled policy.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from zero.errors import InvalidArgumentError
from zero.pb import zero_pb2

__all__ = ["MAX_RULES", "Constraint", "Rule", "Rules", "parse_constraint", "spread_label_of",
           "DEFAULT_SPREAD_LABEL"]

MAX_RULES = 10_000
MAX_CONSTRAINTS = 64
DEFAULT_SPREAD_LABEL = "zone"
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-/]{0,61}[A-Za-z0-9])?")
_VALUE = re.compile(r"[A-Za-z0-9_.\-/:]{0,63}")
_WILD = re.compile(r"[*?\[]")


def check_label(key: str, value: str, what: str) -> None:
    """A label key is 1-63 letters, digits, '_', '.', '-', '/' (alphanumeric at both
    ends); a value 0-63 of those or ':'. InvalidArgumentError names `what`."""
    if not _LABEL.fullmatch(key):
        raise InvalidArgumentError(f"{what}: label key {key!r} must be 1-63 letters, digits, '_', '.', '-' or '/', "
                                   f"starting and ending with a letter or digit")
    if not _VALUE.fullmatch(value):
        raise InvalidArgumentError(f"{what}: label value {value!r} must be at most 63 letters, digits, "
                                   f"'_', '.', '-', '/' or ':'")


def check_labels(labels: Mapping[str, str], what: str = "labels") -> None:
    if len(labels) > 32:
        raise InvalidArgumentError(f"{what}: {len(labels)} labels; at most 32 are allowed")
    for k, v in labels.items():
        check_label(k, v, what)


@dataclass(frozen=True, slots=True)
class Constraint:
    negated: bool
    key: str
    value: str

    def holds(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.key) == self.value) != self.negated

    def __str__(self) -> str:
        return f"{'!' if self.negated else ''}{self.key}={self.value}"


def parse_constraint(text: str) -> Constraint:
    """"k=v" or "!k=v"; InvalidArgumentError says what is wrong."""
    negated = text.startswith("!")
    key, eq, value = text[negated:].partition("=")
    if not eq:
        raise InvalidArgumentError(f"constraint {text!r} is not KEY=VALUE or !KEY=VALUE")
    check_label(key, value, f"constraint {text!r}")
    return Constraint(negated, key, value)


@dataclass(frozen=True, slots=True)
class Rule:
    index: int  # 1-based, as operators count
    glob: str
    pin_group: int
    constraints: tuple[Constraint, ...]

    def group_ok(self, gid: int, members: Iterable[zero_pb2.Member]) -> bool:
        """Whether group `gid` with these members may serve the rule's tablets. A group
        with no members meets no constraint."""
        if self.pin_group:
            return gid == self.pin_group
        if not self.constraints:
            return True
        ms = list(members)
        return bool(ms) and all(c.holds(m.labels) for m in ms for c in self.constraints)

    @property
    def binding(self) -> bool:
        """It restricts where its tablets live (a rule with neither pin nor constraints
        does not)."""
        return bool(self.pin_group or self.constraints)

    def __str__(self) -> str:
        if self.pin_group:
            what = f"pins to group {self.pin_group}"
        elif self.constraints:
            what = "needs " + ", ".join(str(c) for c in self.constraints)
        else:
            what = "lets them live anywhere"
        return f"rule {self.index} ({self.glob!r} {what})"


def spread_label_of(policy_label: str) -> str | None:
    """The label new members spread over: "" means zone, "-" means none."""
    if policy_label == "-":
        return None
    return policy_label or DEFAULT_SPREAD_LABEL


def _prefix(glob: str) -> str:
    m = _WILD.search(glob)
    return glob if m is None else glob[:m.start()]


class Rules:
    """A compiled policy: `rule_for(name)` is the first rule whose glob matches."""

    def __init__(self, policy: zero_pb2.PlacementPolicy) -> None:
        self.policy = policy
        self.rules = tuple(_compile(i + 1, r) for i, r in enumerate(policy.rules))
        self.spread_label = spread_label_of(policy.spread_label)
        self._by_prefix: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for rule in self.rules:
            pattern = re.compile(fnmatch.translate(rule.glob))
            self._by_prefix.setdefault(_prefix(rule.glob), []).append((rule.index - 1, pattern))
        self._lengths = sorted({len(p) for p in self._by_prefix})
        self._memo: dict[str, Rule | None] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, name: str) -> Rule | None:
        """The first rule whose glob matches `name`; None when none does."""
        memo = self._memo
        if name in memo:
            return memo[name]
        best = len(self.rules)
        by_prefix = self._by_prefix
        for n in self._lengths:
            if n > len(name):
                break
            for i, pattern in by_prefix.get(name[:n], ()):
                if i >= best:
                    break
                if pattern.match(name):
                    best = i
                    break
        got = self.rules[best] if best < len(self.rules) else None
        if len(memo) < 1_000_000:
            memo[name] = got
        return got

    def match_all(self, names: list[str]) -> list[Rule | None]:
        """`rule_for` of each name, in order (the planner's batch: memo hits inline)."""
        memo, rule_for, miss = self._memo, self.rule_for, _MISS
        out: list[Rule | None] = []
        append = out.append
        for n in names:
            got = memo.get(n, miss)
            append(rule_for(n) if got is miss else got)  # type: ignore[arg-type]
        return out


_MISS = object()


def _compile(index: int, r: zero_pb2.PlacementRule) -> Rule:
    where = f"rule {index}"
    if not r.tablet_glob:
        raise InvalidArgumentError(f"{where}: tablet_glob is empty")
    if len(r.tablet_glob.encode()) > 1024:
        raise InvalidArgumentError(f"{where}: tablet_glob is longer than 1024 bytes")
    if r.pin_group and r.constraints:
        raise InvalidArgumentError(f"{where}: it both pins to group {r.pin_group} and has constraints; "
                                   f"a rule does one or the other")
    if len(r.constraints) > MAX_CONSTRAINTS:
        raise InvalidArgumentError(f"{where}: {len(r.constraints)} constraints; at most {MAX_CONSTRAINTS}")
    parsed = tuple(parse_constraint(c) for c in r.constraints)
    want: dict[str, str] = {}
    for c in parsed:
        if not c.negated:
            if want.get(c.key, c.value) != c.value:
                raise InvalidArgumentError(f"{where}: constraints contradict each other: "
                                           f"{c.key}={want[c.key]} and {c}")
            want[c.key] = c.value
    for c in parsed:
        if c.negated and want.get(c.key) == c.value:
            raise InvalidArgumentError(f"{where}: constraints contradict each other: {c.key}={c.value} and {c}")
    return Rule(index, r.tablet_glob, r.pin_group, parsed)


def check_policy(policy: zero_pb2.PlacementPolicy, groups: Container[int]) -> Rules:
    """The compiled policy, or InvalidArgumentError with the reason: a bad glob or
    constraint, constraints that contradict each other, a pin to a group that does not
    exist, a bad spread label."""
    if len(policy.rules) > MAX_RULES:
        raise InvalidArgumentError(f"{len(policy.rules)} rules; at most {MAX_RULES:,} are allowed")
    if policy.spread_label not in ("", "-"):
        check_label(policy.spread_label, "", "spread_label")
    compiled = Rules(policy)
    for rule in compiled.rules:
        if rule.pin_group and rule.pin_group not in groups:
            raise InvalidArgumentError(f"rule {rule.index}: group {rule.pin_group} does not exist")
    return compiled
