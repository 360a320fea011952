"""etcd-io/raft's test `network` (raft_test.go), for the scenario tests ported from it;
the newTestRaft-level helpers it builds on are in etcd_raft.py.

etcd's peers are bare `raft` objects with an ever-growing unstable log; here every
peer is a `Node`: a RawNode over MemoryStorage driven through the Ready contract —
persist the snapshot, entries and HardState, send the messages, apply the committed
entries (conf changes through apply_conf_change), then advance(). This matters in
raftcore because vote and append responses — including a candidate's own vote and a
leader's own append ack — are held until advance() (thesis §3.8); every Ready is
checked for responses whose state is not yet persisted (`check_ready_responses`). A
peer may also be `BLACK_HOLE` (etcd's nopStepper).

Two ways to deliver, the two of etcd's tests (the order of deliveries decides some
outcomes: who hears of a commit before a leader steps down, whose vote arrives first):
- `send(*msgs)` is etcd's network.send (raft_test.go): breadth-first, each message is
  stepped into its receiver, whose Readys are processed at once, and the messages
  they carry join the end of the queue. A node reached by no message keeps its Ready
  (as etcd's raft keeps its outbox until stepped) until the queue runs dry; then
  send() ends with stabilize(), so it returns with the whole network quiescent.
- `stabilize()` is etcd's rafttest stabilize (the datadriven testdata/*.txt): in
  rounds, every node processes its Readys, then every message they carried is
  delivered; until a round carries nothing. Call it after ticking a node or driving it
  through its RawNode (where etcd calls readMessages()).
Messages a node sends pass through the faults (`drop`, `cut`, `isolate`, `ignore`,
`msg_hook`); those given to send() bypass them, as in etcd. Local types (MsgHup,
MsgBeat, ...) are stepped into the Raft object, as etcd's network does, so tests can
inject them; the others go through RawNode.step, as from a transport. Proposals a
node refuses are kept in `dropped_proposals`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ProposalDroppedError
from ..raft import Raft
from ..raftpb import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    EntryNormal,
    HardState,
    Message,
    MsgBeat,
    MsgCheckQuorum,
    MsgHup,
    MsgProp,
    MsgSnapStatus,
    MsgUnreachable,
)
from ..rawnode import RawNode
from ..ready import Ready, ReadState
from ..storage import MemoryStorage
from .etcd_raft import check_ready_responses, entries_with_terms, memory_storage, new_rawnode, new_storage

__all__ = ["BLACK_HOLE", "Network", "Node", "PeerFactory", "new_node", "ents_node", "voted_node"]

# Types RawNode.step refuses (only raftcore generates them); tests inject them directly.
_LOCAL = frozenset((MsgHup, MsgBeat, MsgCheckQuorum, MsgUnreachable, MsgSnapStatus))
# More deliveries (or rounds) than this in one send() means messages bounce for ever.
_MAX_MESSAGES = 100_000


class _BlackHole:
    """A peer that swallows every message (etcd's nopStepper)."""

    def __repr__(self) -> str:
        return "BLACK_HOLE"


BLACK_HOLE = _BlackHole()


# -- a RawNode driven through the Ready contract --------------------------------------------------
class Node:
    """A RawNode with its MemoryStorage, driven through the Ready contract, recording
    what the application saw."""

    def __init__(self, rn: RawNode) -> None:
        self.rn = rn
        self.storage = memory_storage(rn.raft)
        self.id = rn.raft.id
        # Every committed entry the application applied, in order.
        self.applied: list[Entry] = []
        self.read_states: list[ReadState] = []
        # What apply_conf_change returned, for each conf change applied.
        self.conf_states: list[ConfState] = []
        # Every Ready processed (for tests that inspect them).
        self.readies: list[Ready] = []

    @property
    def raft(self) -> Raft:
        return self.rn.raft

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.rn.tick()

    def process_ready(self) -> list[Message]:
        """Handle one Ready, if there is one; returns the messages to send."""
        rn = self.rn
        if not rn.has_ready():
            return []
        rd = rn.ready()
        self.readies.append(rd)
        st = self.storage
        check_ready_responses(self.id, st, rd)
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            if e.type == EntryConfChange and e.data:
                self.conf_states.append(rn.apply_conf_change(ConfChange.FromString(e.data)))
            elif e.type == EntryConfChangeV2:
                # An empty ConfChangeV2 leaves the joint config.
                self.conf_states.append(rn.apply_conf_change(ConfChangeV2.FromString(e.data)))
            self.applied.append(e)
        self.read_states.extend(rd.read_states)
        rn.advance(rd)
        return list(rd.messages)

    def drain(self) -> list[Message]:
        """Process Readys until there is none; return the messages they carried."""
        out: list[Message] = []
        for _ in range(1000):
            if not self.rn.has_ready():
                return out
            out.extend(self.process_ready())
        raise AssertionError(f"node {self.id} never stops having Readys")

    def applied_data(self) -> list[bytes]:
        """Payloads of the normal entries applied, empty ones left out."""
        return [e.data for e in self.applied if e.type == EntryNormal and e.data]


def new_node(id: int, peers: Iterable[int] = (), learners: Iterable[int] = (),
             storage: MemoryStorage | None = None, election: int = 10, heartbeat: int = 1,
             **kw: Any) -> Node:
    """A Node on `storage`, or on a new_storage(peers, learners)."""
    s = storage if storage is not None else new_storage(peers, learners)
    return Node(new_rawnode(id, election, heartbeat, s, **kw))


# -- nodes with prepared state (etcd's entsWithConfig / votedWithConfig) ---------------------
PeerFactory = Callable[[int, Sequence[int]], RawNode]


def ents_node(*terms: int, **cfg: Any) -> PeerFactory:
    """A peer whose log holds one entry per term given, at term terms[-1], no vote."""
    def make(id: int, peers: Sequence[int]) -> RawNode:
        s = new_storage(peers, entries=entries_with_terms(*terms), hard_state=HardState(term=terms[-1]))
        return new_rawnode(id, 5, 1, s, **cfg)
    return make


def voted_node(vote: int, term: int, **cfg: Any) -> PeerFactory:
    """A peer that voted for `vote` at `term` and has an empty log."""
    def make(id: int, peers: Sequence[int]) -> RawNode:
        s = new_storage(peers, hard_state=HardState(term=term, vote=vote))
        return new_rawnode(id, 5, 1, s, **cfg)
    return make


# -- the network ------------------------------------------------------------------------------
class Network:
    """etcd's `network`. Peers 1..n, each None (a fresh node of the full voter set,
    configured with `cfg`), BLACK_HOLE, a prepared Node or RawNode (its id must match
    its position) or a PeerFactory `(id, peer_ids) -> RawNode`."""

    def __init__(self, *peers: Node | RawNode | PeerFactory | _BlackHole | None, seed: int = 0,
                 **cfg: Any) -> None:
        self.ids = list(range(1, len(peers) + 1))
        self.peers: dict[int, Node | _BlackHole] = {}
        for pid, p in zip(self.ids, peers):
            peer: Node | _BlackHole
            if p is None:
                peer = new_node(pid, self.ids, **cfg)
            elif isinstance(p, (Node, _BlackHole)):
                peer = p
            elif isinstance(p, RawNode):
                peer = Node(p)
            else:
                peer = Node(p(pid, self.ids))
            if isinstance(peer, Node) and peer.id != pid:
                raise ValueError(f"peer #{pid} has id {peer.id}")
            self.peers[pid] = peer
        self.rng = random.Random(seed)
        self.dropm: dict[tuple[int, int], float] = {}
        self.ignorem: set[int] = set()
        # Called for every message a node sends; False drops it.
        self.msg_hook: Callable[[Message], bool] | None = None
        # Proposals a node refused (ProposalDroppedError), for tests to inspect.
        self.dropped_proposals: list[Message] = []

    def __getitem__(self, pid: int) -> Node:
        p = self.peers[pid]
        assert isinstance(p, Node), f"peer {pid} is a black hole"
        return p

    def nodes(self) -> list[Node]:
        """The peers that are not black holes, by id."""
        return [p for _, p in sorted(self.peers.items()) if isinstance(p, Node)]

    # -- faults ------------------------------------------------------------------------------
    def drop(self, from_: int, to: int, perc: float) -> None:
        self.dropm[(from_, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 2.0)
        self.drop(other, one, 2.0)

    def isolate(self, pid: int) -> None:
        for other in self.ids:
            if other != pid:
                self.drop(pid, other, 1.0)
                self.drop(other, pid, 1.0)

    def ignore(self, t: int) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm = {}
        self.ignorem = set()

    def filter(self, msgs: Iterable[Message]) -> list[Message]:
        """The messages that get through the faults."""
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            assert m.type != MsgHup, "MsgHup never goes over the network"
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if perc > 0 and self.rng.random() < perc:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    # -- delivery -----------------------------------------------------------------------------
    def send(self, *msgs: Message) -> None:
        """etcd's network.send, then stabilize(): see the module docstring."""
        q: deque[Message] = deque(msgs)
        for _ in range(_MAX_MESSAGES):
            if not q:
                self.stabilize()
                return
            m = q.popleft()
            node = self.peers.get(m.to)  # step() may rewrite m.to (a forwarded proposal)
            if isinstance(node, Node):
                self._step(node, m)
                q.extend(self.filter(node.drain()))
        raise AssertionError("network did not quiesce")

    def stabilize(self) -> None:
        """etcd's rafttest stabilize: see the module docstring."""
        for _ in range(_MAX_MESSAGES):
            msgs: list[Message] = []
            for node in self.nodes():
                msgs.extend(self.filter(node.drain()))
            if not msgs:
                return
            for m in msgs:
                dest = self.peers.get(m.to)
                if isinstance(dest, Node):
                    self._step(dest, m)
        raise AssertionError("network did not quiesce")

    def _step(self, node: Node, m: Message) -> None:
        try:
            if m.type in _LOCAL:
                node.raft.step(m)
            else:
                node.rn.step(m)
        except ProposalDroppedError:
            self.dropped_proposals.append(m)

    # -- shorthands for etcd's common messages ---------------------------------------------
    def hup(self, pid: int) -> None:
        self.send(Message(type=MsgHup, from_=pid, to=pid))

    def beat(self, pid: int) -> None:
        self.send(Message(type=MsgBeat, from_=pid, to=pid))

    def propose(self, pid: int, data: bytes = b"") -> None:
        self.send(Message(type=MsgProp, from_=pid, to=pid, entries=[Entry(data=data)]))
