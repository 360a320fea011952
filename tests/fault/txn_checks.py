"""Checkers of the transactional workloads (bank.py, list_append.py): pure functions from
a history to a list of violations, as checkers.py. They read what txn_workload records:
per transaction `start_ts`, `read_ts` (= start_ts, or a snapshot's timestamp), `reads`
{key: value seen}, `writes` {key: value written}, `commit_ts` (ok), `status` (zero's
later answer); per Oracle-stream subscription its `events`.

    decisions     no transaction is both committed and aborted: the client's answer,
                  zero's later TxnStatus/TryAbort and every subscriber's stream agree
                  per start_ts, with one commit_ts; a transaction that never asked to
                  commit never commits
    realtime      every acknowledged commit is visible to every read that began after
                  it: the read's timestamp is at or above its commit_ts
    snapshots     every read equals the state that the commits at or below its read_ts
                  wrote, replayed in commit_ts order (so it saw every commit below its
                  snapshot, none above it, and none that aborted)
    first_committer_wins
                  of two committed transactions that wrote a key, the later one started
                  after the earlier one committed (SI's write rule, on timestamps)
    watermark     per subscription: commits arrive in commit_ts order, max_assigned
                  and safe_ts never go down, and when max_assigned M arrives every
                  commit with since < commit_ts <= M has arrived before it

A transaction whose decision stayed unknown (zero purged it) is reported by `decisions`
and its keys are not replayed above its start_ts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from .history import FAIL, OK, Op

__all__ = ["decision", "committed", "decisions", "realtime", "snapshots", "first_committer_wins", "watermark",
           "unknown"]


def _desc(o: Op) -> str:
    v = {k: x for k, x in o.value.items() if k not in ("events",)}
    return f"{o.process}/{o.f}@{o.invoke:.3f}-{o.complete:.3f}={v}"


def _txns(ops: Iterable[Op]) -> list[Op]:
    return [o for o in ops if o.value.get("start_ts") and o.f != "oracle"]


def decision(o: Op) -> tuple[str, int] | None:
    """zero's decision on a transaction op, as recorded: ("commit", commit_ts),
    ("abort", 0), or None (unknown, or not a transaction)."""
    if not o.value.get("start_ts") or o.f == "oracle":
        return None
    st = o.value.get("status") or {}
    if "commit_ts" in st:
        return "commit", st["commit_ts"]
    if "aborted" in st:
        return "abort", 0
    if o.type == OK:
        return "commit", o.value["commit_ts"]
    if o.type == FAIL and "reason" in o.value:
        return "abort", 0
    return None


def committed(ops: Iterable[Op]) -> dict[int, tuple[int, Op]]:
    """start_ts -> (commit_ts, op) of every transaction zero committed."""
    out = {}
    for o in _txns(ops):
        d = decision(o)
        if d is not None and d[0] == "commit":
            out[o.value["start_ts"]] = (d[1], o)
    return out


def unknown(ops: Iterable[Op]) -> list[Op]:
    """Transactions that wrote, asked to commit, and whose decision nobody learned."""
    return [o for o in _txns(ops) if decision(o) is None and o.value.get("writes") and o.type != FAIL]


def decisions(ops: Iterable[Op]) -> list[str]:
    ops = list(ops)
    out: list[str] = []
    seen: dict[int, Op] = {}
    for o in _txns(ops):
        s = o.value["start_ts"]
        if s in seen:
            out.append(f"decisions: start_ts {s} was given to two transactions: {_desc(seen[s])} and {_desc(o)}")
        seen[s] = o
        st = o.value.get("status") or {}
        if o.type == OK:
            if "aborted" in st:
                out.append(f"decisions: acknowledged as committed, later aborted: {_desc(o)}")
            elif "commit_ts" in st and st["commit_ts"] != o.value["commit_ts"]:
                out.append(f"decisions: acknowledged with commit_ts {o.value['commit_ts']}, later "
                           f"{st['commit_ts']}: {_desc(o)}")
            if o.value.get("undecided"):
                out.append(f"decisions: acknowledged as committed, later undecided: {_desc(o)}")
        elif o.type == FAIL and "commit_ts" in st:
            why = "it was answered aborted" if "reason" in o.value else "it never asked to commit"
            out.append(f"decisions: committed although {why}: {_desc(o)}")
        if "purged" in st:
            out.append(f"decisions: the decision could not be learned (purged by zero): {_desc(o)}")
    known = {s: decision(o) for s, o in seen.items()}
    for sub in (o for o in ops if o.f == "oracle"):
        for e in sub.value.get("events", ()):
            if e[0] == "m":
                continue
            d = known.get(e[1])
            if d is None:
                continue
            if e[0] == "c" and d != ("commit", e[2]):
                out.append(f"decisions: {sub.process}'s Oracle stream (since {sub.value['since']}) carried a commit "
                           f"of {e[1]} at {e[2]}; the transaction's decision is {d}: {_desc(seen[e[1]])}")
            elif e[0] == "a" and d[0] == "commit":
                out.append(f"decisions: {sub.process}'s Oracle stream carried an abort of {e[1]}, which "
                           f"committed at {d[1]}: {_desc(seen[e[1]])}")
    return out


def realtime(ops: Iterable[Op]) -> list[str]:
    """A read invoked after a commit was acknowledged has read_ts >= its commit_ts."""
    ops = list(ops)
    acked = sorted((o for o in _txns(ops) if o.type == OK), key=lambda o: o.complete)
    reads = sorted((o for o in ops if o.value.get("read_ts") and "reads" in o.value
                    and o.value.get("phase") != "read"), key=lambda o: o.invoke)
    out: list[str] = []
    i, best = 0, None
    for r in reads:
        while i < len(acked) and acked[i].complete < r.invoke:
            if best is None or acked[i].value["commit_ts"] > best.value["commit_ts"]:
                best = acked[i]
            i += 1
        if best is not None and r.value["read_ts"] < best.value["commit_ts"]:
            out.append(f"realtime: a commit acknowledged before a read began is not visible to it: {_desc(best)} "
                       f"then {_desc(r)}")
    return out


def _history_of_keys(ops: list[Op]) -> dict[str, tuple[list[int], list[Any]]]:
    """key -> (commit_ts ascending, values written) over every committed transaction."""
    per: dict[str, list[tuple[int, Any]]] = {}
    for c, o in committed(ops).values():
        for k, v in (o.value.get("writes") or {}).items():
            per.setdefault(k, []).append((c, v))
    return {k: ([c for c, _ in sorted(vs, key=lambda x: x[0])], [v for _, v in sorted(vs, key=lambda x: x[0])])
            for k, vs in per.items()}


def snapshots(ops: Iterable[Op], *, empty: Any = None) -> list[str]:
    """Every recorded read (of a transaction that got past its reads) equals the replay
    of the committed writes at or below its read_ts (`empty` before any write)."""
    ops = list(ops)
    hist = _history_of_keys(ops)
    blind: dict[str, int] = {}  # key -> lowest start_ts of an unknown transaction writing it
    for o in unknown(ops):
        for k in o.value["writes"]:
            blind[k] = min(blind.get(k, o.value["start_ts"]), o.value["start_ts"])
    out: list[str] = []
    for o in ops:
        if "reads" not in o.value or not o.value.get("read_ts") or o.value.get("phase") == "read":
            continue
        r = o.value["read_ts"]
        for k, seen in o.value["reads"].items():
            if k in blind and r > blind[k]:
                continue
            cs, vs = hist.get(k, ([], []))
            i = bisect.bisect_right(cs, r)
            want = vs[i - 1] if i else empty
            if seen != want:
                at = f"the commit at {cs[i - 1]}" if i else "no commit"
                out.append(f"snapshots: {k} read {seen!r} at read_ts {r}, but {at} left {want!r} there: {_desc(o)}")
    return out


def first_committer_wins(ops: Iterable[Op]) -> list[str]:
    per: dict[str, list[tuple[int, int, Op]]] = {}
    for s, (c, o) in committed(ops).items():
        for k in o.value.get("writes") or {}:
            per.setdefault(k, []).append((c, s, o))
    out: list[str] = []
    for k, got in sorted(per.items()):
        got.sort(key=lambda x: x[0])
        for (c1, _, a), (_, s2, b) in zip(got, got[1:]):
            if s2 < c1:
                out.append(f"first_committer_wins: both wrote {k} with overlapping snapshots (start_ts {s2} is "
                           f"below the other's commit_ts {c1}): {_desc(a)} and {_desc(b)}")
    return out


def watermark(ops: Iterable[Op]) -> list[str]:
    ops = list(ops)
    known = sorted(c for c, _ in committed(ops).values())
    out: list[str] = []
    for sub in (o for o in ops if o.f == "oracle"):
        since = sub.value["since"]
        got: set[int] = set()
        last_c, last_m, last_s = 0, 0, 0
        i = bisect.bisect_right(known, since)
        where = f"{sub.process}'s Oracle stream (since {since}, zero {sub.args.get('zero')})"
        for e in sub.value.get("events", ()):
            if e[0] == "c":
                if e[2] <= last_c:
                    out.append(f"watermark: {where} carried commit_ts {e[2]} after {last_c}")
                last_c = max(last_c, e[2])
                got.add(e[2])
            elif e[0] == "s":
                if e[1] < last_s:
                    out.append(f"watermark: {where}: safe_ts went from {last_s} down to {e[1]}")
                last_s = max(last_s, e[1])
            elif e[0] == "m":
                m = e[1]
                if m < last_m:
                    out.append(f"watermark: {where}: max_assigned went from {last_m} down to {m}")
                last_m = max(last_m, m)
                while i < len(known) and known[i] <= m:
                    if known[i] not in got:
                        out.append(f"watermark: {where} announced max_assigned {m} before the commit at {known[i]}")
                    i += 1
    return out
