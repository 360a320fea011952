"""SimCluster: a deterministic in-memory Raft cluster on a SimNetwork.

Each simulated node is a RawNode, the MemoryStorage it persists to (which survives a
crash: it *is* the disk) and a RecordingStateMachine (which does not: it is rebuilt from
the storage's snapshot on restart, and Raft replays the rest). The cluster drives them
the way an application must (the Ready contract):

    persist snapshot, entries, hard state -> send messages -> apply committed entries
    (apply_conf_change for conf changes) -> advance -> maybe snapshot + compact

Time is ticks. `step_tick()` ticks every live node once, then "settles": it processes
Readys and delivers the messages that are due, round after round, until nothing is
left for this tick. Every external action (propose, crash, ...) settles too, and every
event is checked against Raft's safety properties (see invariants.py) as it happens; a
violation raises InvariantViolation with the seed, the tick and the recent trace.

A removed node is stopped, as an application would after RemoveNode, once a majority of
the voters of a configuration without it have applied that configuration (before that,
they may still need its vote: a joint configuration, or a majority that has not learned
the change was committed). Ids are never reused.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .. import raftpb
from ..config import Config
from ..errors import ProposalDroppedError
from ..raftpb import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
)
from ..rawnode import RawNode
from ..ready import SnapshotStatus, StateType
from ..storage import MemoryStorage
from .app import AppliedEntry, RecordingStateMachine
from .invariants import InvariantChecker, InvariantViolation
from .network import SimNetwork

__all__ = ["SimCluster", "SimNode", "LivenessError", "NodeState"]

# A tick settles in at most this many rounds of Ready processing and delivery; more
# means messages keep bouncing with no delay, which no Raft exchange needs.
_MAX_ROUNDS = 10_000

_LOCAL_CONFIG_KEYS = frozenset({"id", "storage", "applied", "rng"})


class LivenessError(AssertionError):
    """A condition the simulation waited for did not happen within its tick budget."""


class NodeState:
    """Lifecycle of a simulated node (plain strings, shown in traces)."""

    LIVE = "live"
    CRASHED = "crashed"
    REMOVED = "removed"


@dataclass(slots=True, eq=False)
class SimNode:
    """One simulated node. `storage` is its disk; everything else is memory."""

    id: int
    storage: MemoryStorage
    raw: RawNode | None = None  # None while crashed or removed
    sm: RecordingStateMachine = field(default_factory=RecordingStateMachine)
    conf_state: ConfState = field(default_factory=ConfState)
    state: str = NodeState.LIVE
    incarnation: int = 0
    hard_state: HardState = field(default_factory=HardState)  # as persisted
    is_leader: bool = False
    lead: int = 0
    reads: dict[bytes, int] = field(default_factory=dict)  # request_ctx -> read index

    @property
    def rawnode(self) -> RawNode:
        """The running RawNode (an AssertionError while the node is down)."""
        if self.raw is None:
            raise AssertionError(f"node {self.id} is not running ({self.state})")
        return self.raw

    @property
    def live(self) -> bool:
        return self.state == NodeState.LIVE

    @property
    def term(self) -> int:
        return self.hard_state.term

    @property
    def commit(self) -> int:
        return self.hard_state.commit

    @property
    def applied(self) -> int:
        return self.sm.applied

    def members(self) -> set[int]:
        cs = self.conf_state
        return set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing) | set(cs.learners_next)


class SimCluster:
    """n bootstrapped nodes (ids 1..n) on a seeded SimNetwork. See the module docstring.

    `config` holds raftcore.Config fields shared by every node (election_tick,
    heartbeat_tick, check_quorum, pre_vote, max_size_per_msg, ...); each node gets its
    own `rng` derived from `seed`. With `snapshot_every=k` a node snapshots its state
    machine and compacts its log every k applied entries, keeping `compact_margin`
    entries before the snapshot index, so lagging followers need MsgSnap. With
    `fresh_snapshots` (the default) a MsgSnap carries the sender's state machine as
    applied when it is sent rather than the stored snapshot, as etcd's server does.
    `report_unreachable` reports links found cut or down to the sender (random drops
    are silent, as on a real network); `trace_limit` bounds the events kept for failure
    reports; `status_checks` compares every RawNode's status() with what it handed out
    after each tick.
    """

    def __init__(
        self,
        n: int = 3,
        seed: int = 0,
        *,
        network: SimNetwork | None = None,
        snapshot_every: int | None = None,
        compact_margin: int = 0,
        report_unreachable: bool = True,
        trace_limit: int = 300,
        status_checks: bool = True,
        fresh_snapshots: bool = True,
        **config: Any,
    ) -> None:
        bad = _LOCAL_CONFIG_KEYS & config.keys()
        if bad:
            raise ValueError(f"SimCluster sets {sorted(bad)} per node; do not pass them")
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1 or None, got {snapshot_every}")
        self.seed = seed
        self.config = config
        self.snapshot_every = snapshot_every
        self.compact_margin = compact_margin
        self.report_unreachable = report_unreachable
        self.status_checks = status_checks
        self.fresh_snapshots = fresh_snapshots
        self.now = 0
        self.net = network if network is not None else SimNetwork(f"{seed}/net")
        self.net.on_drop = self._on_drop
        self.trace: deque[tuple[Any, ...]] = deque(maxlen=trace_limit)
        self._digest = hashlib.sha256()
        self.checker = InvariantChecker(self._fail)
        self.nodes: dict[int, SimNode] = {}
        # node id -> index of the committed entry that removed it
        self._removal_index: dict[int, int] = {}
        self._to_stop: set[int] = set()
        self._crash_armed: set[int] = set()
        # (reporter, peer, is_snapshot, ok) reports, given to RawNodes between Readys
        self._reports: list[tuple[int, int, bool, bool]] = []
        self._read_seq = 0
        self._early_acks = random.Random(f"{seed}/early-acks")
        peers = list(range(1, n + 1))
        for nid in peers:
            node = self._new_node(nid, MemoryStorage())
            node.rawnode.bootstrap(peers)
        self._event("start", n, sorted(config.items()))
        self._settle()

    # -- queries -------------------------------------------------------------------
    def live_ids(self) -> list[int]:
        return sorted(nid for nid, n in self.nodes.items() if n.live)

    def leader(self) -> int | None:
        """The live node that believes it leads with the highest term, or None."""
        best: SimNode | None = None
        for node in self.nodes.values():
            if node.live and node.is_leader and (best is None or node.term > best.term):
                best = node
        return best.id if best is not None else None

    def members(self) -> set[int]:
        """The configuration (voters and learners, both halves of a joint config) as
        applied by the live node that has applied the most."""
        live = [n for n in self.nodes.values() if n.live]
        if not live:
            return set()
        return max(live, key=lambda n: (n.applied, -n.id)).members()

    def applied_entries(self, nid: int) -> list[AppliedEntry]:
        return list(self.nodes[nid].sm.records)

    def proposals_applied(self, nid: int) -> list[bytes]:
        """The data of the non-empty normal entries node `nid` applied, in order."""
        return self.nodes[nid].sm.normal_data()

    @property
    def trace_digest(self) -> str:
        """A hash of every event so far: equal runs (same seed, same actions) have equal
        digests."""
        return self._digest.hexdigest()

    def format_trace(self, last: int | None = None) -> str:
        events = list(self.trace)
        if last is not None:
            events = events[-last:]
        return "\n".join(_format_event(ev) for ev in events)

    # -- time ----------------------------------------------------------------------
    def step_tick(self) -> None:
        """Advance the simulated clock by one tick: tick every live node, then deliver
        what is due and process Readys until the tick is settled."""
        self.now += 1
        for nid in self.live_ids():
            self.nodes[nid].rawnode.tick()
        self._settle()
        if self.status_checks:
            self._check_status()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.step_tick()

    def wait_for(self, predicate: Callable[[], bool], max_ticks: int, what: str = "") -> int:
        """Tick until `predicate()` holds; return the ticks it took. Raises
        LivenessError (with the trace) if it does not within `max_ticks`."""
        for waited in range(max_ticks + 1):
            if predicate():
                return waited
            if waited < max_ticks:
                self.step_tick()
        raise LivenessError(
            self._report(f"liveness: {what or predicate!r} did not hold within {max_ticks} ticks")
        )

    # -- client actions ------------------------------------------------------------
    def propose(self, data: bytes, *, to: int | None = None) -> bool:
        """Propose `data` at node `to` (default: the leader). False if there is no such
        live node or it dropped the proposal (it may still be lost later)."""
        target = self.leader() if to is None else to
        if target is None or not self._is_live(target):
            self._event("propose-nowhere", target, data)
            return False
        try:
            self.nodes[target].rawnode.propose(data)
        except ProposalDroppedError as exc:
            self._event("propose-dropped", target, data, str(exc))
            return False
        self._event("propose", target, data)
        self._settle()
        return True

    def propose_conf_change(self, cc: ConfChange | ConfChangeV2, *, to: int | None = None) -> bool:
        target = self.leader() if to is None else to
        if target is None or not self._is_live(target):
            self._event("confchange-nowhere", target, _describe_cc(cc))
            return False
        try:
            self.nodes[target].rawnode.propose_conf_change(cc)
        except ProposalDroppedError as exc:
            self._event("confchange-dropped", target, _describe_cc(cc), str(exc))
            return False
        self._event("confchange", target, _describe_cc(cc))
        self._settle()
        return True

    def add_node(self, nid: int, *, learner: bool = False, to: int | None = None) -> bool:
        """Start a joining node `nid` (empty storage, no bootstrap) unless it runs
        already, and propose adding it (as a voter, or a learner)."""
        self._start_joiner(nid)
        t = raftpb.ConfChangeAddLearnerNode if learner else raftpb.ConfChangeAddNode
        return self.propose_conf_change(ConfChange(type=t, node_id=nid), to=to)

    def remove_node(self, nid: int, *, to: int | None = None) -> bool:
        return self.propose_conf_change(
            ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=nid), to=to
        )

    def change_membership(
        self,
        *,
        add: Iterable[int] = (),
        add_learners: Iterable[int] = (),
        remove: Iterable[int] = (),
        explicit: bool = False,
        to: int | None = None,
    ) -> bool:
        """Propose one ConfChangeV2 (joint consensus when it changes more than one voter,
        thesis §4.3). New ids get joining nodes started. With `explicit`, the joint
        config is left only by `leave_joint()`; otherwise raftcore leaves it itself."""
        changes = []
        for nid in add:
            self._start_joiner(nid)
            changes.append(ConfChangeSingle(type=raftpb.ConfChangeAddNode, node_id=nid))
        for nid in add_learners:
            self._start_joiner(nid)
            changes.append(ConfChangeSingle(type=raftpb.ConfChangeAddLearnerNode, node_id=nid))
        for nid in remove:
            changes.append(ConfChangeSingle(type=raftpb.ConfChangeRemoveNode, node_id=nid))
        transition = (
            raftpb.ConfChangeTransitionJointExplicit if explicit else raftpb.ConfChangeTransitionAuto
        )
        return self.propose_conf_change(ConfChangeV2(transition=transition, changes=changes), to=to)

    def leave_joint(self, *, to: int | None = None) -> bool:
        """Propose the empty ConfChangeV2 that leaves a joint configuration."""
        return self.propose_conf_change(ConfChangeV2(), to=to)

    def transfer_leader(self, transferee: int, *, to: int | None = None) -> bool:
        target = self.leader() if to is None else to
        if target is None or not self._is_live(target):
            return False
        self._event("transfer-leader", target, transferee)
        self.nodes[target].rawnode.transfer_leader(transferee)
        self._settle()
        return True

    def read_index(self, *, to: int | None = None) -> bytes | None:
        """Issue a ReadIndex request at node `to` (default: the leader); returns its
        context, whose result later appears in `nodes[to].reads` (and is checked to be
        at least every commit index known when it was issued)."""
        target = self.leader() if to is None else to
        if target is None or not self._is_live(target):
            return None
        self._read_seq += 1
        ctx = b"read-%d" % self._read_seq
        self.checker.on_read_issued(ctx)
        self._event("read-index", target, ctx)
        self.nodes[target].rawnode.read_index(ctx)
        self._settle()
        return ctx

    def campaign(self, nid: int) -> None:
        self._event("campaign", nid)
        self.nodes[nid].rawnode.campaign()
        self._settle()

    # -- faults --------------------------------------------------------------------
    def crash(self, nid: int, *, after_persist: bool = False) -> None:
        """Kill node `nid`: its RawNode, state machine and in-flight messages are lost;
        its storage (what it persisted) stays. With `after_persist` the crash happens
        inside the node's next Ready that persists something, after the write and before
        any of its messages are sent or entries applied."""
        node = self.nodes[nid]
        if not node.live:
            return
        if after_persist:
            self._crash_armed.add(nid)
            self._event("crash-armed", nid)
            return
        self._crash_now(node, "crash")
        self._settle()

    def _crash_now(self, node: SimNode, why: str) -> None:
        node.raw = None
        node.sm = RecordingStateMachine()
        node.is_leader = False
        node.state = NodeState.CRASHED
        self._crash_armed.discard(node.id)
        self._event(why, node.id)
        self.net.set_down(node.id, True)

    def restart(self, nid: int) -> None:
        """Restart a crashed node from its storage: the state machine restores the
        storage's snapshot and Raft replays the committed entries after it."""
        node = self.nodes[nid]
        if node.state != NodeState.CRASHED:
            return
        self._new_node(nid, node.storage, incarnation=node.incarnation + 1)
        self._event("restart", nid, self.nodes[nid].applied)
        self._settle()

    def heal(self) -> None:
        """Repair the network: no partitions, cuts, drops, duplicates or reordering
        (delays stay)."""
        self.net.heal()
        self.net.set_faults(drop=0.0, duplicate=0.0, reorder=0.0)
        self._event("heal")

    def heal_all(self, delay: tuple[int, int] = (0, 1)) -> None:
        """Repair the network, disarm pending crashes and restart every crashed (not
        removed) node."""
        self.heal()
        self._crash_armed.clear()
        self.net.set_faults(delay=delay)
        for nid in sorted(self.nodes):
            if self.nodes[nid].state == NodeState.CRASHED:
                self.restart(nid)

    def partition(self, *groups: Iterable[int]) -> None:
        groups = tuple(sorted(g) for g in groups)
        self._event("partition", groups)
        self.net.partition(*groups)

    def isolate(self, nid: int) -> None:
        self._event("isolate", nid)
        self.net.isolate(nid)

    def cut(self, from_: int, to: int) -> None:
        self._event("cut", from_, to)
        self.net.cut(from_, to)

    # -- final checks --------------------------------------------------------------
    def check_applied_prefixes(self, ids: Iterable[int] | None = None) -> None:
        """Every given node's applied sequence is a prefix of the longest one."""
        ids = sorted(self.live_ids() if ids is None else ids)
        if not ids:
            return
        longest = max((self.nodes[i].sm.records for i in ids), key=len)
        for i in ids:
            recs = self.nodes[i].sm.records
            if recs != longest[: len(recs)]:
                k = next(j for j, (a, b) in enumerate(zip(recs, longest)) if a != b)
                self._fail(
                    f"node {i}'s applied sequence diverges at index {recs[k].index}: "
                    f"{recs[k]} vs {longest[k]}"
                )

    # -- internals: nodes ----------------------------------------------------------
    def _is_live(self, nid: int) -> bool:
        node = self.nodes.get(nid)
        return node is not None and node.live

    def _start_joiner(self, nid: int) -> None:
        if nid not in self.nodes:
            self._new_node(nid, MemoryStorage())
            self._event("join-start", nid)

    def _new_node(self, nid: int, storage: MemoryStorage, incarnation: int = 0) -> SimNode:
        snap = storage.snapshot()
        hs, _ = storage.initial_state()
        sm = RecordingStateMachine.decode(snap.data) if snap.metadata.index else RecordingStateMachine()
        if sm.applied != snap.metadata.index:
            self._fail(
                f"node {nid}: its snapshot at index {snap.metadata.index} holds a state "
                f"machine applied to {sm.applied}"
            )
        cs = ConfState()
        cs.CopyFrom(snap.metadata.conf_state)
        node = SimNode(
            id=nid, storage=storage, sm=sm, conf_state=cs, incarnation=incarnation,
            hard_state=hs,
        )
        rng = random.Random(f"{self.seed}/{nid}/{incarnation}")
        node.raw = RawNode(
            Config(id=nid, storage=storage, applied=snap.metadata.index, rng=rng, **self.config)
        )
        self.nodes[nid] = node
        self.net.set_down(nid, False)
        return node

    # -- internals: the Ready loop -------------------------------------------------
    def _settle(self) -> None:
        for _ in range(_MAX_ROUNDS):
            progressed = False
            for nid in self.live_ids():
                node = self.nodes[nid]
                while node.live and node.rawnode.has_ready():
                    self._handle_ready(node)
                    progressed = True
                if self._to_stop:
                    self._stop_removed()
            if self._reports:
                self._give_reports()
                progressed = True
            for msg in self.net.deliver(self.now):
                self._deliver(msg)
                progressed = True
            if not progressed:
                return
        self._fail(f"tick {self.now} did not settle within {_MAX_ROUNDS} rounds")

    def _deliver(self, msg: Message) -> None:
        node = self.nodes.get(msg.to)
        if node is None or not node.live:
            self._on_drop(msg, "no-node")
            return
        self._event("deliver", msg.to, msg.from_, msg.type, msg.term, msg.index,
                    len(msg.entries), msg.commit, msg.reject)
        try:
            node.rawnode.step(msg)
        except ProposalDroppedError as exc:
            self._event("step-dropped", msg.to, msg.type, str(exc))
        if msg.type == raftpb.MsgSnap:
            self._reports.append((msg.from_, msg.to, True, True))

    def _on_drop(self, msg: Message, why: str) -> None:
        self._event("lost", msg.to, msg.from_, msg.type, msg.term, why)
        if msg.type == raftpb.MsgSnap:
            self._reports.append((msg.from_, msg.to, True, False))
        elif self.report_unreachable and why != "drop":
            self._reports.append((msg.from_, msg.to, False, False))

    def _give_reports(self) -> None:
        reports, self._reports = self._reports, []
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

    def _handle_ready(self, node: SimNode) -> None:
        rd = node.rawnode.ready()
        nid, storage, ck = node.id, node.storage, self.checker
        # 1. Persist: snapshot, entries, hard state.
        if rd.snapshot is not None and rd.snapshot.metadata.index:
            snap = rd.snapshot
            self._event("install-snapshot", nid, snap.metadata.index, snap.metadata.term)
            ck.on_snapshot(nid, snap)
            storage.apply_snapshot(snap)
            node.sm = RecordingStateMachine.decode(snap.data)
            if node.sm.applied != snap.metadata.index:
                self._fail(
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
            self._event("persist", nid, rd.entries[0].index, rd.entries[-1].index,
                        rd.entries[-1].term)
            ck.on_append(nid, storage, rd.entries)
        if rd.hard_state is not None:
            old = node.hard_state
            new = HardState(term=rd.hard_state.term, vote=rd.hard_state.vote,
                            commit=rd.hard_state.commit)
            storage.set_hard_state(new)
            node.hard_state = new
            if (old.term, old.vote, old.commit) != (new.term, new.vote, new.commit):
                self._event("hard-state", nid, new.term, new.vote, new.commit)
            ck.on_hard_state(nid, old, new, storage)
            if new.commit > old.commit:
                for other in self.nodes.values():
                    if other.live and other.is_leader and other.term > new.term:
                        ck.check_leader_has(other.id, other.term, other.storage, other.term)
        if rd.soft_state is not None:
            was = node.is_leader
            node.is_leader = rd.soft_state.raft_state == StateType.LEADER
            node.lead = rd.soft_state.lead
            self._event("role", nid, rd.soft_state.raft_state.name, rd.soft_state.lead, node.term)
            if node.is_leader and not was:
                ck.on_leader(nid, node.term, storage)
        if nid in self._crash_armed and (rd.entries or rd.hard_state or rd.snapshot):
            self._crash_now(node, "crash-after-persist")
            return
        # 2. Send. Half the Readys (seeded) also hand their held acks over right after
        # persisting (RawNode.persisted, as zero's Ready loop does), before the apply.
        msgs = list(rd.messages)
        if self._early_acks.random() < 0.5:
            msgs.extend(node.rawnode.persisted(rd))
        for msg in msgs:
            if msg.to == nid:
                self._fail(f"node {nid} sent a message to itself: {msg}")
            if msg.type == raftpb.MsgSnap and self.fresh_snapshots:
                msg = self._freshen_snapshot(node, msg)
            self.net.send(msg, self.now)
        # 3. Apply.
        for e in rd.committed_entries:
            self._apply(node, e)
        for rs in rd.read_states:
            self._event("read-state", nid, rs.request_ctx, rs.index)
            ck.on_read_state(nid, rs.index, rs.request_ctx)
            node.reads[rs.request_ctx] = rs.index
        node.rawnode.advance(rd)
        # 4. Maybe snapshot and compact.
        every = self.snapshot_every
        if every is not None and node.sm.applied - storage.snapshot().metadata.index >= every:
            idx = node.sm.applied
            storage.create_snapshot(idx, node.conf_state, node.sm.encode())
            compact_to = idx - self.compact_margin
            if compact_to > storage.first_index() - 1:
                storage.compact(compact_to)
            self._event("snapshot", nid, idx, storage.first_index())

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
        self._event("fresh-snapshot", node.id, msg.to, meta.index, last.index)
        return fresh

    def _apply(self, node: SimNode, e: Entry) -> None:
        nid = node.id
        if e.index != node.sm.applied + 1:
            self._fail(
                f"node {nid} was given committed entry {e.index} to apply but its state "
                f"machine is at {node.sm.applied}"
            )
        if e.index >= node.storage.first_index() and node.storage.term(e.index) != e.term:
            self._fail(
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
        self._event("conf", nid, e.index, _describe_cs(cs))
        for r in removed:
            if r not in self._removal_index and r in self.nodes:
                self._removal_index[r] = e.index
                self._to_stop.add(r)

    def _check_status(self) -> None:
        """After a settled tick every RawNode agrees with what it handed out: its term
        and commit are the persisted ones, applied is what the state machine applied
        (and never beyond commit), its role is the one its SoftState announced."""
        for nid in self.live_ids():
            node = self.nodes[nid]
            st = node.rawnode.status()
            if st.applied > st.commit:
                self._fail(f"node {nid}: applied {st.applied} is beyond commit {st.commit}")
            if (st.term, st.commit) != (node.term, node.commit):
                self._fail(
                    f"node {nid}: status says term {st.term} commit {st.commit} but the "
                    f"persisted hard state is term {node.term} commit {node.commit} with "
                    "no Ready pending"
                )
            if st.applied != node.applied:
                self._fail(
                    f"node {nid}: status says applied {st.applied}, the state machine "
                    f"applied {node.applied}"
                )
            if (st.raft_state == StateType.LEADER) != node.is_leader:
                self._fail(
                    f"node {nid}: status says {st.raft_state.name} but its last SoftState "
                    f"said leader={node.is_leader}"
                )

    def _stop_removed(self) -> None:
        """Stop the removed nodes the cluster no longer needs: those that a majority of
        the voters of a configuration without them have applied past (so they can elect
        a leader without them). A joint configuration still naming one keeps it; so
        does a majority that has not applied the change yet, as it may need its vote.
        Runs between Readys: the node may be the one applying its removal."""
        for nid in sorted(self._to_stop):
            at = self._removal_index[nid]
            after = [
                n for n in self.nodes.values() if n.applied >= at and nid not in n.members()
            ]
            if not after:
                continue
            voters = max(after, key=lambda n: (n.applied, -n.id)).conf_state.voters
            done = sum(
                1 for v in voters
                if v in self.nodes and self.nodes[v].applied >= at
                and nid not in self.nodes[v].members()
            )
            if 2 * done <= len(voters):
                continue
            self._to_stop.discard(nid)
            node = self.nodes[nid]
            if node.state == NodeState.REMOVED:
                continue
            node.raw = None
            node.is_leader = False
            node.state = NodeState.REMOVED
            self._crash_armed.discard(nid)
            self._event("stopped-removed", nid)
            self.net.set_down(nid, True)

    # -- internals: trace and failures --------------------------------------------
    def _event(self, kind: str, *detail: Any) -> None:
        ev = (self.now, kind) + detail
        self.trace.append(ev)
        self._digest.update(repr(ev).encode())

    def _report(self, headline: str) -> str:
        states = ", ".join(
            f"{n.id}:{n.state}{'*' if n.is_leader else ''} term={n.term} commit={n.commit} "
            f"applied={n.applied}"
            for n in sorted(self.nodes.values(), key=lambda n: n.id)
        )
        return (
            f"{headline}\n  seed={self.seed} tick={self.now}\n  nodes: {states}\n"
            f"  last {len(self.trace)} events:\n" + _indent(self.format_trace())
        )

    def _fail(self, message: str) -> NoReturn:
        raise InvariantViolation(self._report(message))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _describe_cc(cc: ConfChange | ConfChangeV2) -> str:
    if isinstance(cc, ConfChange):
        return f"{raftpb.ConfChangeType.Name(cc.type)}({cc.node_id})"
    if not cc.changes:
        return "LeaveJoint"
    inner = ",".join(f"{raftpb.ConfChangeType.Name(c.type)}({c.node_id})" for c in cc.changes)
    return f"V2[{raftpb.ConfChangeTransition.Name(cc.transition)}: {inner}]"


def _describe_cs(cs: ConfState) -> str:
    s = f"voters={sorted(cs.voters)}"
    if cs.learners:
        s += f" learners={sorted(cs.learners)}"
    if cs.voters_outgoing:
        s += f" outgoing={sorted(cs.voters_outgoing)}"
    if cs.learners_next:
        s += f" learners_next={sorted(cs.learners_next)}"
    return s


def _format_event(ev: tuple[Any, ...]) -> str:
    tick, kind, *rest = ev
    if kind in ("deliver", "lost") and len(rest) >= 3:
        rest = list(rest)
        rest[2] = raftpb.MessageType.Name(rest[2])
    return f"t={tick:<5} {kind:<16} " + " ".join(str(x) for x in rest)
