"""A follower's replication progress as the leader sees it (etcd tracker/progress.go).

States (etcd's design.md):
- PROBE: the leader does not know where the follower's log ends; it sends at most one
  MsgApp per heartbeat interval and waits for the answer (probe_sent pauses it).
- REPLICATE: the follower is known to match; the leader streams entries optimistically,
  bounded by the inflight window.
- SNAPSHOT: the follower needs a snapshot; nothing is sent until it is reported
  applied or failed.

Invariant: match < next; match is durable on the follower.
"""

from __future__ import annotations

import enum

from .inflights import Inflights

__all__ = ["Progress", "ProgressState"]


class ProgressState(enum.Enum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    __slots__ = (
        "match", "next", "state", "pending_snapshot", "recent_active", "probe_sent",
        "inflights", "is_learner",
    )

    def __init__(self, *, match: int = 0, next: int = 1, inflights: Inflights,
                 is_learner: bool = False, recent_active: bool = False) -> None:
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        # In SNAPSHOT state: the index of the snapshot in flight.
        self.pending_snapshot = 0
        # Whether the follower was heard from since the last CheckQuorum.
        self.recent_active = recent_active
        # In PROBE state: an append was sent and not yet answered; pause until a
        # heartbeat response or an ack.
        self.probe_sent = False
        self.inflights = inflights
        self.is_learner = is_learner

    def clone(self) -> "Progress":
        p = Progress(match=self.match, next=self.next, inflights=self.inflights.clone(),
                     is_learner=self.is_learner, recent_active=self.recent_active)
        p.state = self.state
        p.pending_snapshot = self.pending_snapshot
        p.probe_sent = self.probe_sent
        return p

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot, probe from the snapshot's index: the follower has at
        # least that, if the snapshot was applied.
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An ack of index n arrived; returns whether match advanced."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append at index `rejected` arrived; move next back
        (fast log rejection: to match_hint + 1). False if the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            # A stale rejection (of an index the follower has since matched).
            if rejected <= self.match:
                return False
            # Directly fall back to the last known match.
            self.next = self.match + 1
            return True
        # In PROBE, only the rejection of the last probe counts.
        if self.next - 1 != rejected:
            return False
        # Never at or below match (the invariant match < next): a stale rejection
        # whose index happens to equal next - 1 again must not rewind the follower
        # past what it is known to have, e.g. into the compacted log (etcd 6439482).
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether sending new entries to this follower must wait."""
        s = self.state
        if s == ProgressState.REPLICATE:
            return self.inflights.full()
        if s == ProgressState.PROBE:
            return self.probe_sent
        return True

    def __repr__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == ProgressState.SNAPSHOT:
            s += f" pending_snap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
        return s
