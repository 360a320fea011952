"""`zero admin` verbs for placement (SPEC "Placement"): `placement get|set FILE.yaml`,
`replicas GROUP N`, `drain GROUP [--undrain]`, `explain TABLET`, `delete-tablet TABLET`,
`bump --uid N | --ts N`. zero/ops/admin.py registers them and runs them with its output
helpers (human text, or --json; exit codes as every verb).

A policy file is YAML:

    spread_label: zone          # optional; "" = zone, "-" = no spreading
    version: 12                 # optional: replace only if the policy is still version 12
    rules:
      - tablet: "user.*"        # a glob (tablet_glob)
        pin_group: 3
      - tablet: "logs.*"
        constraints: ["zone=a", "!disk=hdd"]

A file that does not read as such is a usage error (exit 2) with a one-line message,
found before anything is sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

import yaml

from zero.errors import InvalidArgumentError
from zero.pb import zero_pb2, zero_pb2_grpc

__all__ = ["VERBS", "add_verbs", "load_policy", "run_verb", "Output"]

VERBS = frozenset({"placement", "replicas", "drain", "explain", "delete-tablet", "bump"})
_RULE_KEYS = {"tablet", "tablet_glob", "pin_group", "constraints"}
_TOP_KEYS = {"rules", "spread_label", "version"}

# (out, as_json, obj, human) -> None; admin.py's _print
Output = Callable[[TextIO, bool, object, Callable[[], str]], None]


def add_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pl = verbs.add_parser("placement", parents=[common], help="show or set the placement policy (YAML)")
    pl.add_argument("action", choices=["get", "set"])
    pl.add_argument("file", nargs="?", help="set: the policy file (YAML)")
    pl.add_argument("--dry-run", action="store_true", help="set: change nothing; show the moves it would start")
    rp = verbs.add_parser("replicas", parents=[common], help="set a group's number of voting members (1-7)")
    rp.add_argument("group", type=int)
    rp.add_argument("replicas", type=int)
    dr = verbs.add_parser("drain", parents=[common], help="move every tablet off a group and take no new ones")
    dr.add_argument("group", type=int)
    dr.add_argument("--undrain", action="store_true", help="let the group take tablets and members again")
    ex = verbs.add_parser("explain", parents=[common], help="why a tablet is where it is, and what would move it")
    ex.add_argument("tablet")
    dt = verbs.add_parser("delete-tablet", parents=[common], help="forget a tablet (refused while it moves)")
    dt.add_argument("tablet")
    bu = verbs.add_parser("bump", parents=[common], help="raise max_uid or max_txn_ts to at least N (never lowers)")
    kind = bu.add_mutually_exclusive_group(required=True)
    kind.add_argument("--uid", type=int, metavar="N", help="raise max_uid to at least N")
    kind.add_argument("--ts", type=int, metavar="N", help="raise max_txn_ts to at least N")


def load_policy(text: str, name: str = "the policy file") -> zero_pb2.PlacementPolicy:
    """A policy from YAML text; InvalidArgumentError says in one line what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InvalidArgumentError(f"{name} is not YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InvalidArgumentError(f"{name}: expected a mapping with rules, spread_label, version")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise InvalidArgumentError(f"{name}: unknown key {sorted(map(str, unknown))[0]!r} "
                                   f"(expected rules, spread_label, version)")
    policy = zero_pb2.PlacementPolicy(spread_label=_str(doc.get("spread_label", ""), "spread_label", name),
                                      version=_uint(doc.get("version", 0), "version", name, 64))
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise InvalidArgumentError(f"{name}: rules must be a list")
    for i, r in enumerate(rules, start=1):
        where = f"{name}: rule {i}"
        if not isinstance(r, dict):
            raise InvalidArgumentError(f"{where} must be a mapping with tablet, pin_group or constraints")
        bad = set(r) - _RULE_KEYS
        if bad:
            raise InvalidArgumentError(f"{where}: unknown key {sorted(map(str, bad))[0]!r} "
                                       f"(expected tablet, pin_group, constraints)")
        glob = r.get("tablet", r.get("tablet_glob"))
        if glob is None:
            raise InvalidArgumentError(f"{where}: tablet (a glob) is missing")
        constraints = r.get("constraints") or []
        if isinstance(constraints, str):
            constraints = [constraints]
        if not isinstance(constraints, list):
            raise InvalidArgumentError(f"{where}: constraints must be a list of KEY=VALUE or !KEY=VALUE")
        policy.rules.append(zero_pb2.PlacementRule(
            tablet_glob=_str(glob, "tablet", where), pin_group=_uint(r.get("pin_group", 0), "pin_group", where, 32),
            constraints=[_str(c, "constraints", where) for c in constraints]))
    return policy


def _str(v: Any, what: str, where: str) -> str:
    if not isinstance(v, str):
        raise InvalidArgumentError(f"{where}: {what} must be a string, not {v!r}")
    return v


def _uint(v: Any, what: str, where: str, bits: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << bits:
        raise InvalidArgumentError(f"{where}: {what} must be a whole number 0..{(1 << bits) - 1}, not {v!r}")
    return v


def policy_yaml(p: zero_pb2.PlacementPolicy) -> str:
    doc: dict[str, Any] = {"version": p.version, "spread_label": p.spread_label,
                           "rules": [{"tablet": r.tablet_glob, **({"pin_group": r.pin_group} if r.pin_group else {}),
                                      **({"constraints": list(r.constraints)} if r.constraints else {})}
                                     for r in p.rules]}
    text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return text


def _policy_text(p: zero_pb2.PlacementPolicy) -> str:
    lines = [("dry run: nothing changed\n" if p.dry_run else "") + policy_yaml(p).rstrip("\n"), "status:"]
    lines += [f"  {s}" for s in p.status]
    verb = "would move" if p.dry_run else "moving"
    lines.append(f"{verb}: {len(p.moves)} tablet{'s' if len(p.moves) != 1 else ''}")
    for m in p.moves:
        lines.append(f"  {m.tablet.predicate}: group {m.tablet.group_id} -> {m.target_group}: {m.reasons[-1]}")
    return "\n".join(lines)


def _explain_text(e: zero_pb2.PlacementExplanation) -> str:
    head = f"{e.tablet.predicate}: {'satisfied' if e.satisfied else 'NOT satisfied'}"
    return "\n".join([head] + [f"  - {r}" for r in e.reasons])


def run_verb(ns: argparse.Namespace, admin: zero_pb2_grpc.ZeroAdminStub, md: list[tuple[str, str]] | None,
             out: TextIO, show: Output, as_dict: Callable[[Any], dict[str, Any]]) -> int:
    """Run a placement verb; returns 0, or 1 when the answer is a refusal worth an exit
    code (explain of an unsatisfied tablet still exits 0). InvalidArgumentError: a usage
    error, before anything is sent. grpc.RpcError: as every verb."""
    t, v, js = ns.timeout, ns.verb, ns.json
    if v == "placement":
        if ns.action == "get":
            if ns.file:
                raise InvalidArgumentError("placement get takes no file")
            p = admin.GetPlacement(zero_pb2.GetPlacementRequest(), timeout=t, metadata=md)
        else:
            if not ns.file:
                raise InvalidArgumentError("placement set needs a FILE.yaml")
            try:
                with open(ns.file, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise InvalidArgumentError(f"cannot read {ns.file}: {e.strerror or e}") from None
            policy = load_policy(text, ns.file)
            policy.dry_run = ns.dry_run
            p = admin.SetPlacement(policy, timeout=t, metadata=md)
        show(out, js, as_dict(p), lambda: _policy_text(p))
        return 0
    if v == "replicas":
        if not 1 <= ns.replicas <= 7 or ns.group <= 0:
            raise InvalidArgumentError("replicas GROUP N: GROUP above 0, N between 1 and 7")
        r = admin.SetGroupReplicas(zero_pb2.SetGroupReplicasRequest(group_id=ns.group, replicas=ns.replicas),
                                   timeout=t, metadata=md)
        extra = f"; remove, in this order: {', '.join(map(str, r.surplus))}" if r.surplus else ""
        show(out, js, as_dict(r), lambda: f"group {r.group_id} now has size {r.replicas}{extra}")
        return 0
    if v == "drain":
        if ns.group <= 0:
            raise InvalidArgumentError("drain GROUP: GROUP above 0")
        d = admin.DrainGroup(zero_pb2.DrainGroupRequest(group_id=ns.group, undrain=ns.undrain), timeout=t,
                             metadata=md)
        show(out, js, as_dict(d), lambda: (
            f"group {d.group_id} is draining; {d.tablets_left} tablets left to move away" if d.draining
            else f"group {d.group_id} is not draining"))
        return 0
    if v == "explain":
        ex = admin.ExplainPlacement(zero_pb2.Tablet(predicate=ns.tablet), timeout=t, metadata=md)
        show(out, js, as_dict(ex), lambda: _explain_text(ex))
        return 0
    if v == "delete-tablet":
        dt = admin.DeleteTablet(zero_pb2.Tablet(predicate=ns.tablet), timeout=t, metadata=md)
        show(out, js, as_dict(dt), lambda: f"deleted tablet {dt.deleted.predicate} (was in group {dt.deleted.group_id})")
        return 0
    if v == "bump":
        kind, floor = (zero_pb2.UID, ns.uid) if ns.uid is not None else (zero_pb2.TIMESTAMP, ns.ts)
        if not 1 <= floor < 1 << 63:
            raise InvalidArgumentError("bump: N must be between 1 and 2^63 - 1")
        ids = admin.BumpLease(zero_pb2.BumpLeaseRequest(kind=kind, floor=floor), timeout=t, metadata=md)
        what = "max_uid" if kind == zero_pb2.UID else "max_txn_ts"
        show(out, js, as_dict(ids), lambda: (
            f"{what} raised to {ids.end_id}" if ids.start_id else f"{what} is already {ids.end_id}: unchanged"))
        return 0
    raise InvalidArgumentError(f"unknown verb {v!r}")
