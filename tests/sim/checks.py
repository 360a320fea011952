"""Checkers of the oracle's answers, in the style of tests/fault/checkers.py: pure
functions from a history to a list of violations (only ok ops are evidence)."""

from __future__ import annotations

from collections.abc import Iterable

from fault.history import OK, Op

__all__ = ["decisions", "ceilings"]


def decisions(ops: Iterable[Op]) -> list[str]:
    """A decision per start_ts never changes; a commit_ts is above its start_ts, no two
    transactions share one, and none lies inside a timestamp range handed out."""
    out: list[str] = []
    seen: dict[int, tuple[int, bool]] = {}
    by_commit: dict[int, int] = {}
    ranges: list[tuple[int, int]] = []
    for o in ops:
        if o.type != OK:
            continue
        if o.f == "ts":
            ranges.append((o.value["start"], o.value["end"]))
        elif o.f == "commit":
            start, d = o.args["start_ts"], (o.value["commit_ts"], o.value["aborted"])
            if seen.setdefault(start, d) != d:
                out.append(f"commit: start_ts {start} was decided {seen[start]} and later {d}")
            ts, aborted = d
            if not aborted:
                if ts <= start:
                    out.append(f"commit: start_ts {start} committed at {ts}, not above it")
                if by_commit.setdefault(ts, start) != start:
                    out.append(f"commit: commit_ts {ts} given to start_ts {by_commit[ts]} and {start}")
    ranges.sort()
    for ts, start in sorted(by_commit.items()):
        lo, hi = 0, len(ranges)
        while lo < hi:  # the last range starting at or below ts
            mid = (lo + hi) // 2
            if ranges[mid][0] <= ts:
                lo = mid + 1
            else:
                hi = mid
        if lo and ranges[lo - 1][1] >= ts:
            out.append(f"commit: commit_ts {ts} (start_ts {start}) was also handed out as a timestamp "
                       f"in {ranges[lo - 1]}")
    return out


def ceilings(ops: Iterable[Op], max_uid: int, max_txn_ts: int) -> list[str]:
    """Every id handed out (and every commit timestamp) lies below the ceiling the final
    state leased through Raft: a new leader's blocks start above all of them."""
    out: list[str] = []
    top = {"uid": 0, "ts": 0}
    for o in ops:
        if o.type != OK:
            continue
        if o.f in top:
            top[o.f] = max(top[o.f], o.value["end"])
        elif o.f == "commit" and not o.value["aborted"]:
            top["ts"] = max(top["ts"], o.value["commit_ts"])
    if top["uid"] > max_uid:
        out.append(f"lease: uid {top['uid']} was handed out above the final max_uid {max_uid}")
    if top["ts"] > max_txn_ts:
        out.append(f"lease: timestamp {top['ts']} was handed out above the final max_txn_ts {max_txn_ts}")
    return out
