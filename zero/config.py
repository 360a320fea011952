"""Configuration of one zero: duration parsing (Go-style, as Dgraph's and etcd's flags
take them) and the figures derived from the configured ones, each computed in one place."""

from __future__ import annotations

import re

__all__ = ["election_timeout_seconds", "parse_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration: "100ms", "0.1s", "1m", "1m30s"; "0" is zero."""
    t = text.strip()
    if t == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(t):
        m = _DURATION.match(t, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration (use a number with a unit: 100ms, 0.1s, 1m)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not t:
        raise ValueError("empty duration")
    return total


def election_timeout_seconds(tick_interval: float, election_tick: int) -> float:
    """The election timeout in seconds: `election_tick` ticks of `tick_interval` seconds.

    Raft randomizes a follower's timeout in [election_tick, 2 * election_tick) ticks
    (raftcore.Config); this is the lower bound, the time after which a silent leader may
    be replaced. Waits that must outlast an election take multiples of it.
    """
    return tick_interval * election_tick
