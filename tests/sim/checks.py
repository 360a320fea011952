"""Checkers of the oracle's answers, in the style of tests/fault/checkers.py: pure
functions from a history to a list of violations (only ok ops are evidence)."""

from __future__ import annotations

from collections.abc import Iterable

from fault.history import OK, Op

__all__ = ["decisions"]


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
