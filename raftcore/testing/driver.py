"""NodeDriver: what the application around each simulated RawNode does, by the Ready
contract (docs/DESIGN.md "The Ready contract"):

    persist snapshot, entries, hard state -> send messages -> apply committed entries
    (apply_conf_change for conf changes) -> advance -> maybe snapshot + compact

plus the messages the network delivers to a node (step) and what the transport reports
back to a sender (report_snapshot, report_unreachable). Each event goes to the trace
and to the InvariantChecker as it happens.

The cluster owns time and faults: it calls persist() and then, unless it crashes the
node in between (SimCluster.crash(after_persist=True)), send_and_apply() with the
current tick.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import NoReturn, Protocol

from .. import raftpb
from ..errors import ProposalDroppedError
from ..raftpb import ConfChange, ConfChangeV2, ConfState, Entry, HardState, Message
from ..ready import Ready, SnapshotStatus, StateType
from .app import RecordingStateMachine
from .invariants import InvariantChecker
from .network import SimNetwork
from .simnode import SimNode
from .trace import describe_cs

__all__ = ["NodeDriver", "Settings"]


class Settings(Protocol):
    """The cluster's settings the driver follows (SimCluster's attributes, read live)."""

    snapshot_every: int | None  # snapshot and compact every this many applied entries
    compact_margin: int  # entries kept before the snapshot index when compacting
    report_unreachable: bool  # report messages lost to cuts and down nodes
    fresh_snapshots: bool  # a MsgSnap carries the state machine as applied when sent


class NodeDriver:
    """The application side of every node of one cluster.

    `settings` are read as they are when used; `event(kind, *detail)` records to the
    trace at the current tick; `fail(message)` raises InvariantViolation with the
    report; `on_removed(nid, index)` is told of each node removed by a conf change
    applied anywhere (the entry at `index`).
    """

    def __init__(
        self,
        nodes: Mapping[int, SimNode],
        net: SimNetwork,
        checker: InvariantChecker,
        settings: Settings,
        *,
        seed: int,
        event: Callable[..., None],
        fail: Callable[[str], NoReturn],
        on_removed: Callable[[int, int], None],
    ) -> None:
        self.nodes = nodes
        self.net = net
        self.checker = checker
        self.settings = settings
        self.event = event
        self.fail = fail
        self.on_removed = on_removed
        # (reporter, peer, is_snapshot, ok) reports, given to RawNodes between Readys
        self.reports: list[tuple[int, int, bool, bool]] = []
        self._early_acks = random.Random(f"{seed}/early-acks")

    # -- the network's side ----------------------------------------------------------
    def deliver(self, msg: Message) -> None:
        node = self.nodes.get(msg.to)
        if node is None or not node.live:
            self.on_drop(msg, "no-node")
            return
        self.event("deliver", msg.to, msg.from_, msg.type, msg.term, msg.index,
                   len(msg.entries), msg.commit, msg.reject)
        try:
            node.rawnode.step(msg)
        except ProposalDroppedError as exc:
            self.event("step-dropped", msg.to, msg.type, str(exc))
        if msg.type == raftpb.MsgSnap:
            self.reports.append((msg.from_, msg.to, True, True))

    def on_drop(self, msg: Message, why: str) -> None:
        """SimNetwork.on_drop: a lost MsgSnap is reported FAILURE; a message lost to a
        cut link or a down node is reported unreachable (random drops are silent, as on
        a real network)."""
        self.event("lost", msg.to, msg.from_, msg.type, msg.term, why)
        if msg.type == raftpb.MsgSnap:
            self.reports.append((msg.from_, msg.to, True, False))
        elif self.settings.report_unreachable and why != "drop":
            self.reports.append((msg.from_, msg.to, False, False))

    def give_reports(self) -> bool:
        """Hand the pending reports to the live reporters; whether there were any."""
        reports, self.reports = self.reports, []
        for reporter, peer, is_snap, ok in reports:
            node = self.nodes.get(reporter)
            if node is None or not node.live:
                continue
            if is_snap:
                node.rawnode.report_snapshot(
                    peer, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE
                )
            else:
                node.rawnode.report_unreachable(peer)
        return bool(reports)

    # -- one Ready -------------------------------------------------------------------
    def persist(self, node: SimNode, rd: Ready) -> None:
        """Step 1: install the snapshot, append the entries, set the hard state; take
        in the SoftState."""
        nid, storage, ck = node.id, node.storage, self.checker
        if rd.snapshot is not None and rd.snapshot.metadata.index:
            snap = rd.snapshot
            self.event("install-snapshot", nid, snap.metadata.index, snap.metadata.term)
            ck.on_snapshot(nid, snap)
            storage.apply_snapshot(snap)
            node.sm = RecordingStateMachine.decode(snap.data)
            if node.sm.applied != snap.metadata.index:
                self.fail(
                    f"node {nid}: snapshot at index {snap.metadata.index} carries a state "
                    f"machine applied to {node.sm.applied}"
                )
            if node.sm.records:
                last = node.sm.records[-1]
                ck.on_apply(nid, last.index, last.term, last.type, last.data,
                            snap.metadata.index)
            node.conf_state = ConfState()
            node.conf_state.CopyFrom(snap.metadata.conf_state)
        if rd.entries:
            storage.append(rd.entries)
            self.event("persist", nid, rd.entries[0].index, rd.entries[-1].index,
                       rd.entries[-1].term)
            ck.on_append(nid, storage, rd.entries)
        if rd.hard_state is not None:
            old = node.hard_state
            new = HardState(term=rd.hard_state.term, vote=rd.hard_state.vote,
                            commit=rd.hard_state.commit)
            storage.set_hard_state(new)
            node.hard_state = new
            if (old.term, old.vote, old.commit) != (new.term, new.vote, new.commit):
                self.event("hard-state", nid, new.term, new.vote, new.commit)
            ck.on_hard_state(nid, old, new, storage)
            if new.commit > old.commit:
                for other in self.nodes.values():
                    if other.live and other.is_leader and other.term > new.term:
                        ck.check_leader_has(other.id, other.term, other.storage, other.term)
        if rd.soft_state is not None:
            was = node.is_leader
            node.is_leader = rd.soft_state.raft_state == StateType.LEADER
            node.lead = rd.soft_state.lead
            self.event("role", nid, rd.soft_state.raft_state.name, rd.soft_state.lead, node.term)
            if node.is_leader and not was:
                ck.on_leader(nid, node.term, storage)

    def send_and_apply(self, node: SimNode, rd: Ready, now: int) -> None:
        """Steps 2-4: send, apply, advance, then maybe snapshot and compact."""
        nid, storage = node.id, node.storage
        # 2. Send. Half the Readys (seeded) also hand their held acks over right after
        # persisting (RawNode.persisted, as zero's Ready loop does), before the apply.
        msgs = list(rd.messages)
        if self._early_acks.random() < 0.5:
            msgs.extend(node.rawnode.persisted(rd))
        for msg in msgs:
            if msg.to == nid:
                self.fail(f"node {nid} sent a message to itself: {msg}")
            if msg.type == raftpb.MsgSnap and self.settings.fresh_snapshots:
                msg = self._freshen_snapshot(node, msg)
            self.net.send(msg, now)
        # 3. Apply.
        for e in rd.committed_entries:
            self._apply(node, e)
        for rs in rd.read_states:
            self.event("read-state", nid, rs.request_ctx, rs.index)
            self.checker.on_read_state(nid, rs.index, rs.request_ctx)
            node.reads[rs.request_ctx] = rs.index
        node.rawnode.advance(rd)
        # 4. Maybe snapshot and compact.
        every = self.settings.snapshot_every
        if every is not None and node.sm.applied - storage.snapshot().metadata.index >= every:
            idx = node.sm.applied
            storage.create_snapshot(idx, node.conf_state, node.sm.encode())
            compact_to = idx - self.settings.compact_margin
            if compact_to > storage.first_index() - 1:
                storage.compact(compact_to)
            self.event("snapshot", nid, idx, storage.first_index())

    def _freshen_snapshot(self, node: SimNode, msg: Message) -> Message:
        """Send the state machine as applied now instead of the stored snapshot, as
        etcd's server does (createMergedSnapshotMessage): a stored snapshot may predate
        the conf change that added the recipient, which then must refuse it."""
        meta = msg.snapshot.metadata
        if node.sm.applied <= meta.index:
            return msg
        last = node.sm.records[-1]
        fresh = Message()
        fresh.CopyFrom(msg)
        fresh.snapshot.data = node.sm.encode()
        fresh.snapshot.metadata.index = last.index
        fresh.snapshot.metadata.term = last.term
        fresh.snapshot.metadata.conf_state.CopyFrom(node.conf_state)
        self.event("fresh-snapshot", node.id, msg.to, meta.index, last.index)
        return fresh

    def _apply(self, node: SimNode, e: Entry) -> None:
        nid = node.id
        if e.index != node.sm.applied + 1:
            self.fail(
                f"node {nid} was given committed entry {e.index} to apply but its state "
                f"machine is at {node.sm.applied}"
            )
        if e.index >= node.storage.first_index() and node.storage.term(e.index) != e.term:
            self.fail(
                f"node {nid} was given committed entry {e.index} term {e.term} but its log "
                f"holds term {node.storage.term(e.index)} there"
            )
        self.checker.on_apply(nid, e.index, e.term, e.type, e.data, node.hard_state.commit)
        node.sm.apply(e.index, e.term, e.type, e.data)
        if e.type == raftpb.EntryNormal:
            return
        cc: ConfChange | ConfChangeV2
        if e.type == raftpb.EntryConfChange:
            cc = ConfChange.FromString(e.data)
            removed = [cc.node_id] if cc.type == raftpb.ConfChangeRemoveNode else []
        else:
            cc = ConfChangeV2.FromString(e.data)
            removed = [c.node_id for c in cc.changes if c.type == raftpb.ConfChangeRemoveNode]
        cs = node.rawnode.apply_conf_change(cc)
        node.conf_state = ConfState()
        node.conf_state.CopyFrom(cs)
        self.event("conf", nid, e.index, describe_cs(cs))
        for r in removed:
            self.on_removed(r, e.index)
