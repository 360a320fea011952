"""Test harness for the scenario tests ported from etcd-io/raft (raft_test.go,
raft_paper_test.go, raft_flow_control_test.go, rawnode_test.go, node_test.go).

Two levels, as in etcd's tests:

- a bare `Raft` (etcd's newTestRaft) driven by hand. Because vote and append responses
  wait in `Raft.msgs_after_append` until what they acknowledge is durable, and a
  leader's MsgApps for proposals wait for `flush_bcast()`, `read_messages(r)` emulates
  what RawNode does around a Ready: flush the broadcast, persist the unstable log and
  hard state into the node's MemoryStorage, step the self-addressed responses, and
  hand back the outbox (etcd's readMessages/advanceMessagesAfterAppend).

- `Network` (etcd's `network`): RawNodes over MemoryStorage, with every Ready processed
  per the contract (persist snapshot/entries/hard state, send, apply committed entries
  with apply_conf_change for conf changes, advance) until quiescent. Messages are
  delivered breadth-first; `cut`, `isolate`, `drop`, `ignore`, `recover` and a
  `msg_hook` filter them. A peer may be `BLACK_HOLE` (etcd's nopStepper).

Every Ready the network processes is checked for responses whose state is not yet
persisted (`check_ready_responses`): raftcore must hold those (thesis §3.8).

Config defaults are etcd's newTestConfig: pre_vote and check_quorum off, no message
size limit, election 10 / heartbeat 1, and a seeded rng per node for determinism.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from raftcore import Config, MemoryStorage, ProposalDroppedError, RawNode, Ready
from raftcore.raft import Raft
from raftcore.raftpb import (
    ConfChange,
    ConfChangeV2,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    HardState,
    Message,
    MsgAppResp,
    MsgHup,
    MsgPreVoteResp,
    MsgVoteResp,
)
from raftcore.storage import NO_LIMIT

__all__ = [
    "BLACK_HOLE", "NullLogger", "Network", "new_storage", "new_config", "new_raft",
    "new_rawnode", "entries_with_terms", "read_messages", "advance_messages_after_append",
    "persist", "log_entries", "ents_node", "voted_node", "check_ready_responses", "msg",
]


class NullLogger:
    """Discards raftcore's log lines (they cost time in tight loops)."""

    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


class _BlackHole:
    """A peer that swallows every message (etcd's nopStepper)."""

    def __repr__(self) -> str:
        return "BLACK_HOLE"


BLACK_HOLE = _BlackHole()


def msg(type: int, from_: int = 0, to: int = 0, **kw: Any) -> Message:
    """A Message; `from_`/`to` first because every test names them."""
    return Message(type=type, from_=from_, to=to, **kw)


def entries_with_terms(*terms: int, start: int = 1) -> list[Entry]:
    """etcd's index(start).terms(...): one empty entry per term at consecutive indexes."""
    return [Entry(index=start + i, term=t) for i, t in enumerate(terms)]


def new_storage(peers: Sequence[int] = (), learners: Sequence[int] = (),
                entries: Sequence[Entry] = (), hard_state: HardState | None = None) -> MemoryStorage:
    """A MemoryStorage whose (index 0) snapshot holds the configuration, as etcd's
    newTestMemoryStorage(withPeers(...), withLearners(...))."""
    s = MemoryStorage()
    cs = s.snapshot().metadata.conf_state
    cs.voters.extend(peers)
    cs.learners.extend(learners)
    if entries:
        s.append(list(entries))
    if hard_state is not None:
        s.set_hard_state(hard_state)
    return s


def new_config(id: int, storage: MemoryStorage, election: int = 10, heartbeat: int = 1,
               **kw: Any) -> Config:
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    kw.setdefault("max_size_per_msg", NO_LIMIT)
    kw.setdefault("max_inflight_msgs", 256)
    kw.setdefault("rng", random.Random(id))
    kw.setdefault("logger", NullLogger())
    return Config(id=id, storage=storage, election_tick=election, heartbeat_tick=heartbeat, **kw)


def new_raft(id: int, election: int, heartbeat: int, storage: MemoryStorage, **kw: Any) -> Raft:
    return Raft(new_config(id, storage, election, heartbeat, **kw))


def new_rawnode(id: int, election: int, heartbeat: int, storage: MemoryStorage, **kw: Any) -> RawNode:
    return RawNode(new_config(id, storage, election, heartbeat, **kw))


# -- bare Raft ------------------------------------------------------------------------------
def persist(r: Raft) -> None:
    """Write r's unstable snapshot, entries and hard state to its MemoryStorage and
    mark them stable, as an application does with a Ready before advance()."""
    log = r.raft_log
    storage = log.storage
    assert isinstance(storage, MemoryStorage)
    u = log.unstable
    if u.snapshot is not None:
        idx = u.snapshot.metadata.index
        storage.apply_snapshot(u.snapshot)
        u.accept_in_progress()
        log.stable_snap_to(idx)
    ents = list(u.entries)
    if ents:
        storage.append(ents)
        u.accept_in_progress()
        last = ents[-1]
        log.stable_to(last.index, last.term)
    storage.set_hard_state(r.hard_state())


def advance_messages_after_append(r: Raft) -> None:
    """Persist, then release held responses: step those to r itself (which may hold
    more, e.g. a new leader's self-ack), move the others to r.msgs."""
    for _ in range(1000):
        persist(r)
        held = r.msgs_after_append
        if not held:
            return
        r.msgs_after_append = []
        for m in held:
            if m.to == r.id:
                r.step(m)
            else:
                r.msgs.append(m)
    raise AssertionError("held responses keep coming")


def read_messages(r: Raft) -> list[Message]:
    """etcd's readMessages: flush the lazy MsgApp broadcast, persist and release held
    responses, and take the outbox."""
    r.flush_bcast()
    advance_messages_after_append(r)
    ms = r.msgs
    r.msgs = []
    return ms


def log_entries(r: Raft | RawNode) -> list[tuple[int, int, bytes]]:
    """(index, term, data) of every entry in the node's log (etcd's ltoa, comparably)."""
    rr = r.raft if isinstance(r, RawNode) else r
    return [(e.index, e.term, e.data) for e in rr.raft_log.all_entries()]


# -- nodes with prepared state (etcd's entsWithConfig / votedWithConfig) ---------------------
PeerFactory = Callable[[int, Sequence[int]], RawNode]


def ents_node(*terms: int, **cfg: Any) -> PeerFactory:
    """A peer whose log holds one entry per term given, at term terms[-1], no vote."""
    def make(id: int, peers: Sequence[int]) -> RawNode:
        s = new_storage(peers, entries=entries_with_terms(*terms), hard_state=HardState(term=terms[-1]))
        return RawNode(new_config(id, s, 5, 1, **cfg))
    return make


def voted_node(vote: int, term: int, **cfg: Any) -> PeerFactory:
    """A peer that voted for `vote` at `term` and has an empty log."""
    def make(id: int, peers: Sequence[int]) -> RawNode:
        s = new_storage(peers, hard_state=HardState(term=term, vote=vote))
        return RawNode(new_config(id, s, 5, 1, **cfg))
    return make


# -- the held-responses check -----------------------------------------------------------------
def check_ready_responses(node_id: int, storage: MemoryStorage, rd: Ready) -> None:
    """Before `rd` is persisted, every response it carries must acknowledge state that
    is already durable in `storage` (thesis §3.8): an append ack only entries the
    storage holds, a vote (grant or rejection) only a term/vote the storage holds."""
    hs, _ = storage.initial_state()
    for m in rd.messages:
        if m.type == MsgAppResp and not m.reject and m.index > 0:
            assert m.index <= storage.last_index(), (
                f"node {node_id} acks index {m.index} to {m.to} but only "
                f"{storage.last_index()} is persisted: {m}")
        elif m.type == MsgVoteResp:
            assert m.term <= hs.term, (
                f"node {node_id} answers a vote at term {m.term} before persisting it (has {hs.term})")
            if not m.reject:
                assert hs.term == m.term and hs.vote == m.to, (
                    f"node {node_id} grants its vote to {m.to} at term {m.term} before persisting "
                    f"it (persisted term {hs.term}, vote {hs.vote})")
        elif m.type == MsgPreVoteResp and m.reject:
            assert m.term <= hs.term, (
                f"node {node_id} rejects a pre-vote with term {m.term} before persisting it")


# -- the network ------------------------------------------------------------------------------
class Network:
    """etcd's `network` on RawNodes. `peers` are None (a fresh node of the cluster),
    BLACK_HOLE, a RawNode (its id must match its position) or a factory
    `(id, peer_ids) -> RawNode`. Ids are 1..len(peers)."""

    def __init__(self, *peers: Any, config: Callable[[dict[str, Any]], None] | None = None,
                 seed: int = 0) -> None:
        ids = list(range(1, len(peers) + 1))
        self.ids = ids
        self.nodes: dict[int, RawNode] = {}
        self.storage: dict[int, MemoryStorage] = {}
        # Committed entries each node applied, in order.
        self.applied: dict[int, list[Entry]] = {}
        self.dropm: dict[tuple[int, int], float] = {}
        self.ignorem: set[int] = set()
        # Called for each message about to be delivered; False drops it.
        self.msg_hook: Callable[[Message], bool] | None = None
        self.rng = random.Random(seed)
        # Every Ready processed, per node (for tests that inspect them).
        self.readies: dict[int, list[Ready]] = {}
        for id, p in zip(ids, peers):
            if p is BLACK_HOLE:
                continue
            if p is None:
                kw: dict[str, Any] = {}
                if config is not None:
                    config(kw)
                rn = RawNode(new_config(id, new_storage(ids), **kw))
            elif isinstance(p, RawNode):
                rn = p
            else:
                rn = p(id, ids)
            assert rn.raft.id == id, f"peer at position {id} has id {rn.raft.id}"
            storage = rn.raft.raft_log.storage
            assert isinstance(storage, MemoryStorage)
            self.nodes[id] = rn
            self.storage[id] = storage
            self.applied[id] = []
            self.readies[id] = []

    def raft(self, id: int) -> Raft:
        return self.nodes[id].raft

    # -- delivery ------------------------------------------------------------------------
    def send(self, *msgs: Message) -> None:
        """Deliver msgs and everything they cause, breadth-first, until quiescent. A
        message is stepped into the Raft object directly (as etcd's network does), so
        local types (MsgHup, MsgBeat, MsgProp) work; dropped proposals are ignored."""
        q: deque[Message] = deque(msgs)
        for _ in range(100_000):
            if not q:
                return
            m = q.popleft()
            to = m.to  # step() may rewrite it (a follower forwarding a proposal)
            rn = self.nodes.get(to)
            if rn is None:
                continue  # a black hole
            try:
                rn.raft.step(m)
            except ProposalDroppedError:
                pass
            q.extend(self.filter(self.drain(to)))
        raise AssertionError("network did not quiesce")

    def drain(self, id: int) -> list[Message]:
        """Process node id's Readys per the contract until it has none; return the
        messages they carried (not yet filtered)."""
        rn = self.nodes[id]
        s = self.storage[id]
        out: list[Message] = []
        for _ in range(1000):
            if not rn.has_ready():
                return out
            rd = rn.ready()
            self.readies[id].append(rd)
            check_ready_responses(id, s, rd)
            if rd.snapshot is not None:
                s.apply_snapshot(rd.snapshot)
            if rd.entries:
                s.append(rd.entries)
            if rd.hard_state is not None:
                s.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            for e in rd.committed_entries:
                if e.type == EntryConfChange:
                    rn.apply_conf_change(ConfChange.FromString(e.data))
                elif e.type == EntryConfChangeV2:
                    rn.apply_conf_change(ConfChangeV2.FromString(e.data))
                self.applied[id].append(e)
            rn.advance(rd)
        raise AssertionError(f"node {id} never stops having Readys")

    def filter(self, msgs: Iterable[Message]) -> list[Message]:
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            assert m.type != MsgHup, "MsgHup never goes over the network"
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if self.rng.random() < perc:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    # -- faults ----------------------------------------------------------------------------
    def drop(self, from_: int, to: int, perc: float) -> None:
        self.dropm[(from_, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 2.0)
        self.drop(other, one, 2.0)

    def isolate(self, id: int) -> None:
        for other in self.ids:
            if other != id:
                self.drop(id, other, 1.0)
                self.drop(other, id, 1.0)

    def ignore(self, t: int) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm = {}
        self.ignorem = set()

    # -- inspection ---------------------------------------------------------------------------
    def applied_data(self, id: int) -> list[bytes]:
        """Payloads of the normal entries node id applied, empty ones left out."""
        return [e.data for e in self.applied[id] if e.data and e.type not in (EntryConfChange, EntryConfChangeV2)]
