"""Checkers: pure functions from a history (and the final state) to a list of violations,
each a sentence naming the ops involved. An empty list means the invariant held.

They encode SPEC "Semantics that must hold under faults":
    unique_ids          - 2: id ranges never overlap (UIDs and timestamps separately)
    timestamps_realtime - 2: a timestamp handed out after another call had completed is larger
    claims              - 1: one owner per tablet over the whole history, never contradicted
    membership          - 3: every acknowledged Connect is in the final state
    watchers            - stream versions only grow and every watcher ends at the final version
Only ok ops are evidence; info ops (indeterminate) may or may not have happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .history import OK, Op

__all__ = ["unique_ids", "timestamps_realtime", "claims", "membership", "watchers"]


def _desc(o: Op) -> str:
    return f"{o.process}/{o.f}@{o.invoke:.3f}-{o.complete:.3f}={o.value}"


def unique_ids(ops: Iterable[Op]) -> list[str]:
    """No id is handed out twice: ok ranges of one kind are pairwise disjoint and well formed."""
    out: list[str] = []
    by_kind: dict[str, list[Op]] = {}
    for o in ops:
        if o.type == OK and o.f in ("uid", "ts"):
            by_kind.setdefault(o.f, []).append(o)
    for kind, got in by_kind.items():
        for o in got:
            s, e, n = o.value["start"], o.value["end"], o.args.get("count")
            if s < 1 or e < s or (n is not None and e - s + 1 != n):
                out.append(f"{kind}: malformed range {_desc(o)} for count {n}")
        got.sort(key=lambda o: o.value["start"])
        for a, b in zip(got, got[1:]):
            if b.value["start"] <= a.value["end"]:
                out.append(f"{kind}: ranges overlap: {_desc(a)} and {_desc(b)}")
    return out


def timestamps_realtime(ops: Iterable[Op]) -> list[str]:
    """If timestamp call A completed before call B was invoked, A's end < B's start.

    Sweep B in invocation order while folding in every A that completed before B began;
    only the largest end so far matters."""
    got = [o for o in ops if o.type == OK and o.f == "ts"]
    by_complete = sorted(got, key=lambda o: o.complete)
    out: list[str] = []
    i, best = 0, None
    for b in sorted(got, key=lambda o: o.invoke):
        while i < len(by_complete) and by_complete[i].complete < b.invoke:
            a = by_complete[i]
            if best is None or a.value["end"] > best.value["end"]:
                best = a
            i += 1
        if best is not None and b.value["start"] <= best.value["end"]:
            out.append(f"ts: real-time order broken: {_desc(best)} completed before {_desc(b)} "
                       f"was invoked, yet got a timestamp >= it")
    return out


def claims(ops: Iterable[Op], final_owner: Mapping[str, int], moved: Iterable[str] = ()) -> list[str]:
    """Every ok ShouldServe answer for a tablet names the same group, and that group owns
    the tablet in the final state. `moved` lists tablets with a committed move (none in
    the claim workload, which runs with the rebalancer off)."""
    skip = set(moved)
    seen: dict[str, dict[int, Op]] = {}
    for o in ops:
        if o.type == OK and o.f == "claim" and o.value["group"]:
            seen.setdefault(o.args["tablet"], {}).setdefault(o.value["group"], o)
    out: list[str] = []
    for tablet, owners in sorted(seen.items()):
        if tablet in skip:
            continue
        if len(owners) > 1:
            out.append(f"claim: tablet {tablet} answered with owners {sorted(owners)}: "
                       + "; ".join(_desc(o) for o in owners.values()))
        fin = final_owner.get(tablet, 0)
        if fin not in owners:
            out.append(f"claim: tablet {tablet} is owned by group {fin} in the final state, "
                       f"but answers said {sorted(owners)}")
    for o in ops:  # an indeterminate claim may have happened; an unowned-but-answered tablet not
        if o.type == OK and o.f == "claim" and not o.value["group"] and o.args["group"]:
            out.append(f"claim: a claim for group {o.args['group']} came back unowned: {_desc(o)}")
    return out


def membership(ops: Iterable[Op], final_members: Mapping[int, tuple[int, str]]) -> list[str]:
    """Every acknowledged Connect (member id, group, addr) is in the final state."""
    out: list[str] = []
    for o in ops:
        if o.type != OK or o.f != "connect":
            continue
        mid, gid, addr = o.value["id"], o.value["group"], o.args["addr"]
        got = final_members.get(mid)
        if got is None:
            out.append(f"connect: acknowledged member {mid} ({addr}) is missing after heal/restart: {_desc(o)}")
        elif got != (gid, addr):
            out.append(f"connect: member {mid} acknowledged as group {gid} {addr}, final state has {got}")
    return out


def watchers(ops: Iterable[Op], final_version: int) -> list[str]:
    """Per watcher, versions never go down, never pass the final version, and the last
    one is the final version."""
    per: dict[str, list[Op]] = {}
    for o in ops:
        if o.type == OK and o.f == "watch":
            per.setdefault(o.process, []).append(o)
    out: list[str] = []
    for w, got in sorted(per.items()):
        got.sort(key=lambda o: o.complete)
        for a, b in zip(got, got[1:]):
            if b.value["version"] < a.value["version"]:
                out.append(f"watch: {w} saw version {a.value['version']} then {b.value['version']}: "
                           f"{_desc(a)} then {_desc(b)}")
        top = max(o.value["version"] for o in got)
        if top > final_version:
            out.append(f"watch: {w} saw version {top} above the final version {final_version}")
        if got[-1].value["version"] != final_version:
            out.append(f"watch: {w} ended at version {got[-1].value['version']}, final is {final_version}")
    return out
