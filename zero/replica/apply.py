"""The applied side of one replica: ZeroState, the index applied to it, and the Raft
configuration as of that index.

Committed entries are applied in log order: a normal entry is a Proposal; a conf change
goes to Raft (apply_conf_change) and carries its Proposal (AddZero/RemoveZero) in its
context, so the Raft configuration and `state.zeros` change at the same index. Each
apply resolves the proposer waiting on it (zero/replica/proposals.py). A snapshot from
the leader replaces the state wholesale.
"""

from __future__ import annotations

from raftcore import Node, raftpb

from zero.errors import ZeroError
from zero.metrics import Metrics
from zero.pb import state_pb2
from zero.replica.ports import Clock
from zero.replica.proposals import Proposals
from zero.state.machine import Applied, ZeroState

__all__ = ["Applier", "GAUGES_PERIOD"]

GAUGES_PERIOD = 1.0  # seconds between updates of the gauges that count the whole state


class Applier:
    """ZeroState as applied up to `applied`, with the ConfState its snapshots carry."""

    def __init__(self, proposals: Proposals, *, clock: Clock, metrics: Metrics) -> None:
        self.state = ZeroState()
        self.applied = 0
        self.conf_state = raftpb.ConfState()
        self.snapshot_index = 0  # index of the newest snapshot stored or installed
        self._proposals = proposals
        self._clock = clock
        self._metrics = metrics
        self._gauges_at = 0.0  # Clock.monotonic of the last state-gauge update

    def restore(self, snap: raftpb.Snapshot) -> None:
        """Start from a stored snapshot (or from nothing, for an empty one)."""
        if snap.metadata.index > 0:
            self.state = ZeroState.restore(snap.data)
            self.applied = snap.metadata.index
            self.snapshot_index = self.applied
            self.conf_state.CopyFrom(snap.metadata.conf_state)

    def apply(self, entries: list[raftpb.Entry], raft: Node) -> list[Applied]:
        """Apply committed entries; returns the results of the proposals among them."""
        applied: list[Applied] = []
        proposals = self._proposals
        for e in entries:
            t = e.type
            if t == raftpb.EntryNormal:
                if e.data:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(e.data), applied)
            elif t == raftpb.EntryConfChange:
                cc = raftpb.ConfChange.FromString(e.data)
                self.conf_state = raft.apply_conf_change(cc)
                if cc.context:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(cc.context), applied)
            elif t == raftpb.EntryConfChangeV2:
                cc2 = raftpb.ConfChangeV2.FromString(e.data)
                self.conf_state = raft.apply_conf_change(cc2)
                if cc2.context:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(cc2.context), applied)
            self.applied = e.index
            proposals.slot_applied(e.index)
        self._metrics.applied_index.set(self.applied)
        if applied:
            now = self._clock.monotonic()
            if now - self._gauges_at >= GAUGES_PERIOD:
                # The counts walk every group: at most once a second, not per apply.
                self._gauges_at = now
                self.update_gauges()
        return applied

    def _apply_proposal(self, index: int, p: state_pb2.Proposal, out: list[Applied]) -> None:
        w = self._proposals.take(p.key)
        try:
            a = self.state.apply(index, p)
        except ZeroError as err:
            if w is not None:
                self._proposals.refused(w, err)
            return
        out.append(a)
        if w is not None:
            self._proposals.applied(w, a)

    def install(self, snap: raftpb.Snapshot) -> None:
        """A snapshot from the leader replaces our state wholesale."""
        self.state = ZeroState.restore(snap.data)
        self.applied = snap.metadata.index
        self.snapshot_index = snap.metadata.index
        self.conf_state.CopyFrom(snap.metadata.conf_state)
        self.update_gauges()

    def update_gauges(self) -> None:
        s = self.state
        st = s.view  # read-only, no copy
        m = self._metrics
        m.zeros.set(len(st.zeros))
        m.groups.set(len(st.groups))
        m.members.set(sum(len(g.members) for g in st.groups.values()))
        m.tablets.set(sum(len(g.tablets) for g in st.groups.values()))
        m.max_uid.set(s.max_uid)
        m.max_txn_ts.set(s.max_txn_ts)
