"""Checkers: pure functions from a history (and the final state) to a list of violations,
each a sentence naming the ops involved. An empty list means the invariant held.

They encode SPEC "Semantics that must hold under faults":
    unique_ids          - 2: id ranges never overlap (UIDs and timestamps separately)
    timestamps_realtime - 2: a timestamp handed out after another call had completed is larger
    claims              - 1: one owner per tablet over the whole history, never contradicted
    membership          - 3: every acknowledged Connect is in the final state
    watchers            - stream versions only grow and every watcher ends at the final version
    liveness            - the run was not vacuous: every kind of call the workload makes got
                          enough ok answers, none ended mostly indeterminate, every watcher
                          recorded updates (and, in move runs, a move committed)
Only ok ops are evidence; info ops (indeterminate) may or may not have happened.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping

from .history import FAIL, INFO, OK, Op

__all__ = ["unique_ids", "timestamps_realtime", "claims", "membership", "watchers", "liveness", "kinds",
           "lease_minimums", "queued_answers", "fault_windows", "LEASE_MINIMUMS", "MAX_INDETERMINATE",
           "MAX_INDETERMINATE_ALL", "MIN_WATCH_UPDATES"]


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


def watchers(ops: Iterable[Op], final_version: int, names: Iterable[str] = ()) -> list[str]:
    """Per watcher, versions never go down, never pass the final version, and the last
    one is the final version. Every watcher in `names` must have recorded an update (one
    that recorded none never reached the final version either)."""
    per: dict[str, list[Op]] = {}
    for o in ops:
        if o.type == OK and o.f == "watch":
            per.setdefault(o.process, []).append(o)
    out: list[str] = [f"watch: {w} recorded no update at all (final version {final_version})"
                      for w in sorted(set(names) - set(per))]
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


# -- liveness: the run was not vacuous -----------------------------------------------------------

# The least ok answers per kind of call in one run of the lease/claim/connect workload
# (4 clients, the default Mix, 15 s). Healthy runs on the shared 2-core machine, with other
# test suites running beside them, got 231-1,314 ok per kind (uid, ts, claim), 71-323
# connects, and about half of the timestamps each way, 132-666 (docs/RELIABILITY.md,
# "Liveness"): the minimums are a sixth or less of the worst of those, so only a starved
# kind fails.
LEASE_MINIMUMS: Mapping[str, int] = {
    "uid": 40, "ts": 40, "ts via Timestamps": 20, "ts via AssignIds": 20, "claim": 40, "connect": 10,
}
# A kind counts as starved too when more than this share of its calls ended indeterminate
# while no fault was active - made outside every nemesis op and at least SETTLE seconds after
# it healed (an election, a restarted zero's reconnect). Judged only over at least MIN_QUIET
# such calls. During faults the share is legitimately high: a client whose zero was killed
# retries every 20-50 ms and fails fast each time (healthy runs: up to 42 % of all calls,
# at most 1 of 10-109 quiet ones); over all calls only MAX_INDETERMINATE_ALL is too many.
MAX_INDETERMINATE = 0.30
MAX_INDETERMINATE_ALL = 0.75
SETTLE = 2.0
MIN_QUIET = 10
MIN_WATCH_UPDATES = 5  # per watcher (healthy runs: 100+ each)


def lease_minimums(mix: object, clients: int = 4, scale: float = 1.0) -> dict[str, int]:
    """LEASE_MINIMUMS for the kinds `mix` (a workloads.Mix) enables (weight > 0),
    scaled by `scale` and by `clients` relative to the default 4 (at least 1 each)."""
    f = scale * clients / 4
    return {k: max(1, round(n * f)) for k, n in LEASE_MINIMUMS.items() if getattr(mix, k.split()[0], 0) > 0}


def kinds(o: Op) -> list[str]:
    """The kinds an op counts for: its call (`o.f`); `"<f> via <method>"` for a call that
    could be made more than one way (timestamps: Timestamps or AssignIds); "move committed"
    for a move that was answered as committed."""
    out = [o.f]
    via = o.args.get("via")
    if via:
        out.append(f"{o.f} via {via}")
    if o.f == "move" and o.type == OK and o.value.get("committed"):
        out.append("move committed")
    return out


def fault_windows(ops: Iterable[Op]) -> list[tuple[float, float]]:
    """(injected, healed) of every nemesis op, for liveness' `faults`."""
    return [(o.invoke, o.complete or o.invoke) for o in ops if o.process == "nemesis"]


def _merge(windows: Iterable[tuple[float, float]], settle: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted((a, b + settle) for a, b in windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def liveness(ops: Iterable[Op], minimums: Mapping[str, int], *, watchers: Iterable[str] = (),
             faults: Iterable[tuple[float, float]] = (), min_updates: int = MIN_WATCH_UPDATES,
             max_indeterminate: float = MAX_INDETERMINATE, max_indeterminate_all: float = MAX_INDETERMINATE_ALL,
             settle: float = SETTLE, min_quiet: int = MIN_QUIET) -> list[str]:
    """The run was not vacuous. For every kind in `minimums` (see `kinds`): at least that
    many ok answers; of its calls made while no fault was active (none overlaps a window
    of `faults`, each extended by `settle` s) at most `max_indeterminate` ended
    indeterminate (when there are `min_quiet` of them), and of all its calls at most
    `max_indeterminate_all`. Every watcher in `watchers` recorded `min_updates` updates.
    `ops` are the workload's own calls (not the setup's, the probes' or the nemesis'): a
    run whose every call of one kind failed passes every other checker, which only read
    ok answers."""
    windows = _merge(faults, settle)
    starts = [a for a, _ in windows]

    def quiet(o: Op) -> bool:
        i = bisect.bisect_right(starts, o.complete or o.invoke) - 1  # the last window starting before the end
        return i < 0 or windows[i][1] < o.invoke

    tally: dict[str, Counter[str]] = {}
    calm: dict[str, Counter[str]] = {}
    errors: dict[str, Counter[str]] = {}
    updates: Counter[str] = Counter()
    for o in ops:
        if o.f == "watch" and o.type == OK:
            updates[o.process] += 1
        q = quiet(o)
        for k in kinds(o):
            tally.setdefault(k, Counter())[o.type] += 1
            if q:
                calm.setdefault(k, Counter())[o.type] += 1
            if o.type != OK and o.error:
                errors.setdefault(k, Counter())[o.error[:100]] += 1

    def why(k: str) -> str:
        c = tally.get(k, Counter())
        top = "; ".join(f"{n} x {e}" for e, n in errors.get(k, Counter()).most_common(3))
        return f"(ok {c[OK]}, fail {c[FAIL]}, indeterminate {c[INFO]}{'; most common errors: ' + top if top else ''})"

    out: list[str] = []
    for k, least in minimums.items():
        c = tally.get(k, Counter())
        if c[OK] < least:
            out.append(f"{k!r} starved: {c[OK]} ok answers, fewer than the {least} a healthy run gets at the least "
                       f"{why(k)}")
        total = sum(c.values())
        if total and c[INFO] / total > max_indeterminate_all:
            out.append(f"{k!r} mostly unanswered: {c[INFO]} of its {total} calls ({100 * c[INFO] / total:.0f} %) "
                       f"ended indeterminate, above {100 * max_indeterminate_all:.0f} % {why(k)}")
        cq = calm.get(k, Counter())
        n = sum(cq.values())
        if n >= min_quiet and cq[INFO] / n > max_indeterminate:
            out.append(f"{k!r} unanswered while no fault was active: {cq[INFO]} of its {n} calls made outside the "
                       f"faults (and {settle:g} s after each healed) ended indeterminate "
                       f"({100 * cq[INFO] / n:.0f} %, above {100 * max_indeterminate:.0f} %) {why(k)}")
    for w in watchers:
        if updates[w] < min_updates:
            out.append(f"watcher {w} starved: it recorded {updates[w]} updates, fewer than {min_updates}")
    return out


def queued_answers(ops: Iterable[Op], least: int = 1) -> list[str]:
    """When the nemesis paused the leader past the clients' deadline (pause_leader_long),
    the timestamp calls it queued at that leader (processes "queued<n>") got at least
    `least` ok answers - the late answers are what that fault checks (timestamps_realtime,
    unique_ids). Those queued before the old leader hears of the new term may end
    UNAVAILABLE, so no share of indeterminate answers is set."""
    ops = list(ops)
    pauses = sum(1 for o in ops if o.process == "nemesis" and o.f == "pause_leader_long" and o.type == OK)
    if not pauses:
        return []
    queued = [o for o in ops if o.process.startswith("queued") and not o.process.endswith("-fence")]
    return [f"calls queued at a leader paused past their deadline ({pauses} pauses): {v}"
            for v in liveness(queued, {"ts": least}, max_indeterminate=1.0, max_indeterminate_all=1.0)]
