"""SimCluster: a deterministic in-memory Raft cluster on a SimNetwork.

Each simulated node (simnode.py) is a RawNode, the MemoryStorage it persists to (which
survives a crash: it *is* the disk) and a RecordingStateMachine (which does not). Its
NodeDriver (driver.py) handles its Readys the way an application must (the Ready
contract); the cluster owns what is around them: the clock, the client actions, the
faults (crashes, restarts, the network's partitions) and the failure reports (trace.py).

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

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from .. import raftpb
from ..errors import ProposalDroppedError
from ..raftpb import ConfChange, ConfChangeSingle, ConfChangeV2
from ..storage import MemoryStorage
from .app import AppliedEntry
from .driver import NodeDriver
from .invariants import InvariantChecker, InvariantViolation
from .network import SimNetwork
from .simnode import NodeState, SimNode, may_stop_removed
from .trace import Trace, describe_cc

__all__ = ["SimCluster", "LivenessError"]

# A tick settles in at most this many rounds of Ready processing and delivery; more
# means messages keep bouncing with no delay, which no Raft exchange needs.
_MAX_ROUNDS = 10_000

_LOCAL_CONFIG_KEYS = frozenset({"id", "storage", "applied", "rng"})


class LivenessError(AssertionError):
    """A condition the simulation waited for did not happen within its tick budget."""


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
        self._trace = Trace(trace_limit)
        self.checker = InvariantChecker(self._fail)
        self.nodes: dict[int, SimNode] = {}
        self._driver = NodeDriver(self.nodes, self.net, self.checker, self, seed=seed,
                                  event=self._event, fail=self._fail, on_removed=self._note_removal)
        self.net.on_drop = self._driver.on_drop
        # node id -> index of the committed entry that removed it
        self._removal_index: dict[int, int] = {}
        self._to_stop: set[int] = set()
        self._crash_armed: set[int] = set()
        self._read_seq = 0
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
    def trace(self) -> deque[tuple[Any, ...]]:
        """The last `trace_limit` events, (tick, kind, details...) each."""
        return self._trace.events

    @property
    def trace_digest(self) -> str:
        """A hash of every event so far: equal runs (same seed, same actions) have equal
        digests."""
        return self._trace.digest

    def format_trace(self, last: int | None = None) -> str:
        return self._trace.format(last)

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
            self._event("confchange-nowhere", target, describe_cc(cc))
            return False
        try:
            self.nodes[target].rawnode.propose_conf_change(cc)
        except ProposalDroppedError as exc:
            self._event("confchange-dropped", target, describe_cc(cc), str(exc))
            return False
        self._event("confchange", target, describe_cc(cc))
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
        node.crash()
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
        node = SimNode.start(nid, storage, incarnation, seed=self.seed, config=self.config,
                             fail=self._fail)
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
            if self._driver.give_reports():
                progressed = True
            for msg in self.net.deliver(self.now):
                self._driver.deliver(msg)
                progressed = True
            if not progressed:
                return
        self._fail(f"tick {self.now} did not settle within {_MAX_ROUNDS} rounds")

    def _handle_ready(self, node: SimNode) -> None:
        rd = node.rawnode.ready()
        self._driver.persist(node, rd)
        if node.id in self._crash_armed and (rd.entries or rd.hard_state or rd.snapshot):
            self._crash_now(node, "crash-after-persist")
            return
        self._driver.send_and_apply(node, rd, self.now)

    def _note_removal(self, nid: int, index: int) -> None:
        """A conf change applied at `index` removed `nid`: stop it once that is safe."""
        if nid not in self._removal_index and nid in self.nodes:
            self._removal_index[nid] = index
            self._to_stop.add(nid)

    def _check_status(self) -> None:
        """After a settled tick every RawNode agrees with what it handed out
        (SimNode.status_mismatch)."""
        for nid in self.live_ids():
            problem = self.nodes[nid].status_mismatch()
            if problem is not None:
                self._fail(problem)

    def _stop_removed(self) -> None:
        """Stop the removed nodes the cluster no longer needs (simnode.may_stop_removed).
        Runs between Readys: the node may be the one applying its removal."""
        for nid in sorted(self._to_stop):
            if not may_stop_removed(nid, self._removal_index[nid], self.nodes):
                continue
            self._to_stop.discard(nid)
            node = self.nodes[nid]
            if node.state == NodeState.REMOVED:
                continue
            node.stop_removed()
            self._crash_armed.discard(nid)
            self._event("stopped-removed", nid)
            self.net.set_down(nid, True)

    # -- internals: trace and failures --------------------------------------------
    def _event(self, kind: str, *detail: Any) -> None:
        self._trace.record(self.now, kind, *detail)

    def _report(self, headline: str) -> str:
        return self._trace.report(headline, self.seed, self.now, self.nodes.values())

    def _fail(self, message: str) -> NoReturn:
        raise InvariantViolation(self._report(message))
