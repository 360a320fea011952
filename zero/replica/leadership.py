"""Who leads, as Raft last told this zero: the leader and role of its latest SoftState,
the term of its latest HardState, the record of leader changes people read (/state, the
status page), and the callbacks of the components that act on a change of leadership
(leases, streams, every leader duty: zero/replica/duties.py run_leader_task).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from raftcore import SoftState, StateType

from zero.log import Logger
from zero.pb import zero_pb2
from zero.metrics import Metrics
from zero.replica.ports import Clock

__all__ = ["Leadership", "LEADER_CHANGES_KEPT", "leader_hint"]

LEADER_CHANGES_KEPT = 50


class Leadership:
    def __init__(self, *, clock: Clock, metrics: Metrics, log: Logger, on_lost: Callable[[], None]) -> None:
        self.lead = 0
        self.role = StateType.FOLLOWER
        self.term = 0
        # (wall time, term, leader): the term is the one the new leader leads in (0 for
        # "no leader": the term in which the old one was lost). ReadyLoop sets `term` from
        # a Ready's hard state before it hands that Ready's soft state to update().
        self.changes: list[tuple[float, int, int]] = []
        self.callbacks: list[Callable[[bool, int], None]] = []  # (leading now, term)
        self._clock = clock
        self._metrics = metrics
        self._log = log
        self._on_lost = on_lost  # before the callbacks, when this zero stops leading

    @property
    def is_leader(self) -> bool:
        return self.role == StateType.LEADER

    def update(self, ss: SoftState) -> None:
        """A new SoftState from Raft, after `term` was set from the same Ready."""
        was_leader = self.role == StateType.LEADER
        if ss.lead != self.lead:
            self._metrics.leader_changes.inc()
            self.changes.append((self._clock.wall(), self.term, ss.lead))
            del self.changes[:-LEADER_CHANGES_KEPT]
            self._log.info("leader changed", leader=ss.lead, term=self.term)
        self.lead = ss.lead
        self.role = ss.raft_state
        self._metrics.has_leader.set(1 if ss.lead else 0)
        self._metrics.is_leader.set(1 if ss.raft_state == StateType.LEADER else 0)
        now_leader = ss.raft_state == StateType.LEADER
        if now_leader != was_leader:
            if not now_leader:
                self._on_lost()
            for cb in self.callbacks:
                cb(now_leader, self.term)


def leader_hint(lead: int, me: int, zeros: Mapping[int, zero_pb2.Member],
                join_peers: Mapping[int, str]) -> list[tuple[str, str]]:
    """Trailing metadata naming the leader, for replies from a zero that is not it."""
    if not lead or lead == me:
        return []
    md = [("zero-leader-id", str(lead))]
    z = zeros.get(lead)
    addr = z.addr if z is not None else join_peers.get(lead, "")
    if addr:
        md.append(("zero-leader-addr", addr))
    return md
