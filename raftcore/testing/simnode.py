"""SimNode: one simulated node of a SimCluster — a RawNode, the MemoryStorage it persists
to (which survives a crash: it *is* the disk) and a RecordingStateMachine (which does
not: it is rebuilt from the storage's snapshot on restart, and Raft replays the rest) —
and the rules of its lifecycle: live, crashed (restartable), removed (for good).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..config import Config
from ..raftpb import ConfState, HardState
from ..rawnode import RawNode
from ..ready import StateType
from ..storage import MemoryStorage
from .app import RecordingStateMachine

__all__ = ["NodeState", "SimNode", "may_stop_removed"]


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

    @classmethod
    def start(
        cls, nid: int, storage: MemoryStorage, incarnation: int, *, seed: int,
        config: dict[str, Any], fail: Callable[[str], NoReturn],
    ) -> SimNode:
        """Start node `nid` on `storage` (new, or its disk after a crash): the state
        machine restores the storage's snapshot; a new RawNode with `applied` at that
        snapshot's index and its own seeded rng replays the committed entries after it."""
        snap = storage.snapshot()
        hs, _ = storage.initial_state()
        sm = RecordingStateMachine.decode(snap.data) if snap.metadata.index else RecordingStateMachine()
        if sm.applied != snap.metadata.index:
            fail(
                f"node {nid}: its snapshot at index {snap.metadata.index} holds a state "
                f"machine applied to {sm.applied}"
            )
        cs = ConfState()
        cs.CopyFrom(snap.metadata.conf_state)
        node = cls(
            id=nid, storage=storage, sm=sm, conf_state=cs, incarnation=incarnation,
            hard_state=hs,
        )
        rng = random.Random(f"{seed}/{nid}/{incarnation}")
        node.raw = RawNode(
            Config(id=nid, storage=storage, applied=snap.metadata.index, rng=rng, **config)
        )
        return node

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

    def crash(self) -> None:
        """Lose everything but the storage: the RawNode and the state machine."""
        self.raw = None
        self.sm = RecordingStateMachine()
        self.is_leader = False
        self.state = NodeState.CRASHED

    def stop_removed(self) -> None:
        """Stop for good after its removal (its state machine stays, for inspection)."""
        self.raw = None
        self.is_leader = False
        self.state = NodeState.REMOVED

    def status_mismatch(self) -> str | None:
        """With no Ready pending, the RawNode agrees with what it handed out: its term
        and commit are the persisted ones, applied is what the state machine applied
        (and never beyond commit), its role is the one its SoftState announced. The
        first disagreement, or None."""
        st = self.rawnode.status()
        nid = self.id
        if st.applied > st.commit:
            return f"node {nid}: applied {st.applied} is beyond commit {st.commit}"
        if (st.term, st.commit) != (self.term, self.commit):
            return (
                f"node {nid}: status says term {st.term} commit {st.commit} but the "
                f"persisted hard state is term {self.term} commit {self.commit} with "
                "no Ready pending"
            )
        if st.applied != self.applied:
            return (
                f"node {nid}: status says applied {st.applied}, the state machine "
                f"applied {self.applied}"
            )
        if (st.raft_state == StateType.LEADER) != self.is_leader:
            return (
                f"node {nid}: status says {st.raft_state.name} but its last SoftState "
                f"said leader={self.is_leader}"
            )
        return None


def may_stop_removed(nid: int, at: int, nodes: Mapping[int, SimNode]) -> bool:
    """Whether node `nid`, removed by the entry at index `at`, may be stopped: a majority
    of the voters of a configuration without it have applied past `at` (so they can
    elect a leader without it). A joint configuration still naming it keeps it; so does
    a majority that has not applied the change yet, as it may need its vote."""
    after = [n for n in nodes.values() if n.applied >= at and nid not in n.members()]
    if not after:
        return False
    voters = max(after, key=lambda n: (n.applied, -n.id)).conf_state.voters
    done = sum(
        1 for v in voters
        if v in nodes and nodes[v].applied >= at and nid not in nodes[v].members()
    )
    return 2 * done > len(voters)
