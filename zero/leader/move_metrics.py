"""The move driver's Prometheus metrics, and the group-size gauge the rebalancer plans by.

Counters are the leader's (each zero counts the moves it drove or rolled back); the
gauge reads the replicated state at scrape time, so every zero reports the same sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zero.leader.planner import group_sizes
from zero.pb import zero_pb2

__all__ = ["MoveMetrics"]


class _GroupSizes(Collector):
    def __init__(self, state: Callable[[], zero_pb2.MembershipState]) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("zero_group_size_bytes", "Sum of the reported tablet sizes of each group",
                              labels=["group"])
        try:
            for gid, size in sorted(group_sizes(self._state()).items()):
                g.add_metric([str(gid)], size)
        except Exception:  # a half-built node: report nothing rather than fail the scrape
            pass
        yield g


class MoveMetrics:
    """`state` is read at every scrape: pass a function that reads the node's current
    state (a snapshot install replaces the node's ZeroState)."""

    def __init__(self, registry: CollectorRegistry, state: Callable[[], zero_pb2.MembershipState]) -> None:
        r = registry
        self.started = Counter("zero_tablet_moves_started", "Tablet moves started (StartMove committed)", registry=r)
        self.succeeded = Counter("zero_tablet_moves_succeeded", "Tablet moves committed", registry=r)
        self.failed = Counter("zero_tablet_moves_failed", "Tablet moves whose copy failed or timed out",
                              registry=r)
        self.rolled_back = Counter("zero_tablet_moves_rolled_back",
                                   "Tablet moves rolled back (AbortMove committed), also by a new leader",
                                   registry=r)
        self.seconds = Histogram("zero_tablet_move_seconds", "Duration of committed tablet moves",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900), registry=r)
        self.bytes = Counter("zero_tablet_move_bytes", "Bytes copied by committed tablet moves", registry=r)
        # SPEC "Moves that keep writes available": the leader's gauge (0 on other zeros),
        # bytes sent by every finished copy (committed or not), and how long writes to a
        # moving tablet were refused (FenceMove to commit or roll-back).
        self.active = Gauge("zero_moves_active", "Tablet moves in progress (COPYING or FENCED), on the leader",
                            registry=r)
        self.move_bytes = Counter("zero_move_bytes", "Bytes copied by tablet moves (committed or not)",
                                  registry=r)
        self.fenced_seconds = Histogram("zero_move_fenced_seconds", "How long a moving tablet refused writes",
                                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600),
                                        registry=r)
        r.register(_GroupSizes(state))
