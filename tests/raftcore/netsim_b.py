"""A small synchronous network of RawNodes, after etcd-io/raft's `network` (raft_test.go).

Used by the scenario tests ported from etcd (membership, snapshots, ReadIndex, leader
transfer). Unlike etcd's, whose peers are bare `raft` objects with an ever-growing
unstable log, every node here is a RawNode driven through the Ready contract: persist
the snapshot, entries and HardState into its MemoryStorage, send the messages, apply
the committed entries (conf changes through apply_conf_change), then advance(). This
matters in raftcore because vote and append responses — including a candidate's own
vote and a leader's own append ack — are held until advance() (thesis §3.8).

Defaults follow etcd's newTestConfig: election 10 ticks, heartbeat 1, no size limit,
and CheckQuorum and PreVote *off* (raftcore's Config defaults them on).

`send(*msgs)` delivers the given messages, then drains every node's Readys and delivers
what they produce, until the whole network is quiescent; messages produced by nodes
pass through the faults (drop/cut/isolate/ignore/msg_hook), the given ones do not (as
in etcd). Ticks are not delivered by themselves: call `stabilize()` (a `send()` with
nothing) where etcd calls advanceMessagesAfterAppend()/readMessages().
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

from raftcore import Config, MemoryStorage, ProposalDroppedError, RawNode, ReadState
from raftcore.raft import Raft
from raftcore.raftpb import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    Message,
    MsgBeat,
    MsgCheckQuorum,
    MsgHup,
    MsgProp,
    MsgSnapStatus,
    MsgUnreachable,
)
from raftcore.storage import NO_LIMIT

__all__ = ["Network", "Node", "BLACK_HOLE", "new_storage", "new_config", "new_node", "new_raft",
           "persist_raft", "read_messages", "ids_by_size"]

# Types RawNode.step refuses (only raftcore generates them); tests inject them directly.
_LOCAL = frozenset((MsgHup, MsgBeat, MsgCheckQuorum, MsgUnreachable, MsgSnapStatus))


def ids_by_size(n: int) -> list[int]:
    return list(range(1, n + 1))


def new_storage(voters: Iterable[int] = (), learners: Iterable[int] = ()) -> MemoryStorage:
    """A MemoryStorage whose (empty, index-0) snapshot carries the given ConfState, as
    etcd's newTestMemoryStorage(withPeers(...), withLearners(...)): no bootstrap
    entries, so the first leader's empty entry is index 1 at term 1, as in etcd's tests."""
    s = MemoryStorage()
    cs = s.snapshot().metadata.conf_state
    cs.voters.extend(voters)
    cs.learners.extend(learners)
    return s


def new_config(id: int, storage: MemoryStorage, **overrides: object) -> Config:
    kw: dict[str, object] = dict(
        id=id, storage=storage, election_tick=10, heartbeat_tick=1, max_size_per_msg=NO_LIMIT,
        max_inflight_msgs=256, check_quorum=False, pre_vote=False, rng=random.Random(id))
    kw.update(overrides)
    return Config(**kw)  # type: ignore[arg-type]


def new_raft(id: int, voters: Iterable[int] = (), learners: Iterable[int] = (),
             storage: MemoryStorage | None = None, **cfg: object) -> tuple[Raft, MemoryStorage]:
    """A bare Raft (etcd's newTestRaft) and its storage."""
    s = storage if storage is not None else new_storage(voters, learners)
    return Raft(new_config(id, s, **cfg)), s


def persist_raft(r: Raft, s: MemoryStorage) -> list[Entry]:
    """For tests on a bare Raft (etcd's nextEnts): persist the unstable snapshot and
    entries into `s`, release the held responses (stepping those to ourselves), and
    apply every committed entry (without applying conf changes). Returns them."""
    log = r.raft_log
    u = log.unstable
    if u.snapshot is not None:
        s.apply_snapshot(u.snapshot)
        log.stable_snap_to(u.snapshot.metadata.index)
    if u.entries:
        last = u.entries[-1]
        s.append(list(u.entries))
        u.accept_in_progress()
        log.stable_to(last.index, last.term)
    _release_held(r)
    ents = log.next_committed_ents()
    if ents:
        log.accept_applying(ents[-1].index)
        r.applied_to(ents[-1].index)
    return ents


def _release_held(r: Raft) -> None:
    while r.msgs_after_append:
        held, r.msgs_after_append = r.msgs_after_append, []
        for m in held:
            if m.to == r.id:
                r.step(m)
            else:
                r.msgs.append(m)


def read_messages(r: Raft) -> list[Message]:
    """etcd's readMessages on a bare Raft: release held responses (their state counts as
    persisted) and take the outbox."""
    r.flush_bcast()
    _release_held(r)
    msgs, r.msgs = r.msgs, []
    return msgs


class Node:
    """A RawNode with its MemoryStorage, driven through the Ready contract."""

    def __init__(self, rn: RawNode, storage: MemoryStorage) -> None:
        self.rn = rn
        self.storage = storage
        self.id = rn.raft.id
        # Every committed entry the application applied, in order.
        self.applied: list[Entry] = []
        self.read_states: list[ReadState] = []
        self.conf_states: list[ConfState] = []
        # Leave committed conf changes unapplied (to test the one-pending-change rule).
        self.apply_conf_changes = True

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
        st = self.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            if self.apply_conf_changes and e.type in (EntryConfChange, EntryConfChangeV2) and e.data:
                cc: ConfChange | ConfChangeV2
                if e.type == EntryConfChange:
                    cc = ConfChange.FromString(e.data)
                else:
                    cc = ConfChangeV2.FromString(e.data)
                self.conf_states.append(rn.apply_conf_change(cc))
            elif self.apply_conf_changes and e.type == EntryConfChangeV2:
                # An empty ConfChangeV2 leaves the joint config.
                self.conf_states.append(rn.apply_conf_change(ConfChangeV2()))
            self.applied.append(e)
        self.read_states.extend(rd.read_states)
        rn.advance(rd)
        return list(rd.messages)

    def applied_data(self) -> list[bytes]:
        return [e.data for e in self.applied if e.type == 0 and e.data]


class _BlackHole:
    """A peer that swallows every message (etcd's nopStepper)."""


BLACK_HOLE = _BlackHole()


def new_node(id: int, voters: Iterable[int] = (), learners: Iterable[int] = (),
             storage: MemoryStorage | None = None, **cfg: object) -> Node:
    s = storage if storage is not None else new_storage(voters, learners)
    return Node(RawNode(new_config(id, s, **cfg)), s)


class Network:
    """Peers 1..n: each None (a fresh node of the full voter set, configured with
    `cfg`), a prepared Node, or BLACK_HOLE."""

    def __init__(self, *peers: Node | _BlackHole | None, seed: int = 0, **cfg: object) -> None:
        ids = ids_by_size(len(peers))
        self.peers: dict[int, Node | _BlackHole] = {}
        for pid, p in zip(ids, peers):
            if p is None:
                p = new_node(pid, ids, **cfg)
            elif isinstance(p, Node) and p.id != pid:
                raise ValueError(f"peer #{pid} has id {p.id}")
            self.peers[pid] = p
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
        return [p for _, p in sorted(self.peers.items()) if isinstance(p, Node)]

    # -- faults ------------------------------------------------------------------------------
    def drop(self, frm: int, to: int, perc: float) -> None:
        self.dropm[(frm, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 2.0)
        self.drop(other, one, 2.0)

    def isolate(self, pid: int) -> None:
        for other in self.peers:
            if other != pid:
                self.drop(pid, other, 1.0)
                self.drop(other, pid, 1.0)

    def ignore(self, t: int) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm = {}
        self.ignorem = set()

    def _filter(self, msgs: list[Message]) -> list[Message]:
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
    def _deliver(self, m: Message) -> None:
        p = self.peers.get(m.to)
        if not isinstance(p, Node):
            return
        try:
            if m.type in _LOCAL:
                p.raft.step(m)
            else:
                p.rn.step(m)
        except ProposalDroppedError:
            self.dropped_proposals.append(m)

    def send(self, *msgs: Message) -> None:
        q = deque(msgs)
        while True:
            while q:
                self._deliver(q.popleft())
            busy = False
            for node in self.nodes():
                while node.rn.has_ready():
                    busy = True
                    q.extend(self._filter(node.process_ready()))
            if not busy and not q:
                return

    def stabilize(self) -> None:
        self.send()

    # -- shorthands for etcd's common messages ---------------------------------------------
    def hup(self, pid: int) -> None:
        self.send(Message(type=MsgHup, from_=pid, to=pid))

    def beat(self, pid: int) -> None:
        self.send(Message(type=MsgBeat, from_=pid, to=pid))

    def propose(self, pid: int, data: bytes = b"") -> None:
        self.send(Message(type=MsgProp, from_=pid, to=pid, entries=[Entry(data=data)]))
