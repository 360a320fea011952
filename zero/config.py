"""Configuration of one zero: duration parsing (Go-style, as Dgraph's and etcd's flags
take them) and the figures derived from the configured ones, each computed in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["RunConfig", "election_timeout_seconds", "parse_duration"]

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


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything `zero run` takes, validated (zero/cli.py builds it)."""

    data_dir: str = "./zw"
    grpc_addr: str = "0.0.0.0:5080"
    http_addr: str = "0.0.0.0:6080"
    my: str | None = None  # None: localhost:<grpc port>
    raft_id: int = 0  # 0: the data dir's; else 1 for a new cluster, or assigned when joining
    peer: str = ""  # any live zero to join through (a new data dir only)
    tls_dir: str | None = None  # mutual TLS on every gRPC connection (zero/security/); None: plaintext
    replicas: int = 1
    tick: float = 0.1
    election_ticks: int = 5
    snapshot_after: int = 10_000
    rebalance_interval: float = 480.0  # 0: no periodic rebalancing
    move_timeout: float = 600.0  # a tablet move's copy must finish within this
    move_backoff: float = 3600.0  # a tablet whose move failed is not planned again for this long (doubling)
    move_backoff_max: float = 86400.0
    admin_token: str | None = field(default=None, repr=False)  # never printed
    log_format: str | None = None  # None: console on a TTY, else json
    force_new_cluster: bool = False  # rewrite the data dir into a new single-zero cluster first (recovery.py)
    lease_margin: int = 1_000_000  # ids skipped above the recovered maxima by force_new_cluster
    join_timeout: float = 60.0  # a new zero with --peer: how long it waits for the peer and the join
    liveness_window: float = 10.0  # seconds without a heartbeat after which a data node is unhealthy
    txn_retention: float = 30.0  # seconds the oracle keeps a decision after safe_ts passed it
    live_addr: str | None = None  # /live alone over plain HTTP (probes while the HTTP port is HTTPS); None: off
