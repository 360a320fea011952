"""etcd-io/raft's newTestRaft-level test helpers, for the scenario tests ported from it
(raft_test.go, raft_paper_test.go, raft_flow_control_test.go, raft_snap_test.go,
rawnode_test.go, node_test.go); etcd's `network` built on them is etcd_network.py.

Config defaults are etcd's newTestConfig: pre_vote and check_quorum *off* (raftcore's
Config defaults them on), no message size limit, election 10 / heartbeat 1, and a
seeded rng per node for determinism. A new storage holds no bootstrap entries, so the
first leader's empty entry is index 1 at term 1, as in etcd's tests.

A bare `Raft` (etcd's newTestRaft) is driven by hand. Because vote and append
responses wait in `Raft.msgs_after_append` until what they acknowledge is durable
(thesis §3.8), and a leader's MsgApps for proposals wait for `flush_bcast()`,
`read_messages(r)` emulates what RawNode does around a Ready: flush the broadcast,
persist the unstable log and hard state into the node's MemoryStorage, step the
self-addressed responses, and hand back the outbox (etcd's
readMessages/advanceMessagesAfterAppend). `next_ents(r)` persists the same way and
returns the committed entries, marked applied (etcd's nextEnts).

`check_ready_responses` is the check the network runs on every Ready: no response in
it may acknowledge state that is not yet persisted (raftcore must hold those).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from ..config import Config
from ..raft import Raft
from ..raftpb import Entry, HardState, Message, MessageType, MsgAppResp, MsgPreVoteResp, MsgVoteResp
from ..rawnode import RawNode
from ..ready import Ready
from ..storage import NO_LIMIT, MemoryStorage

__all__ = [
    "NullLogger", "msg", "entries_with_terms", "new_storage", "new_config", "new_raft", "new_rawnode",
    "persist", "advance_messages_after_append", "read_messages", "next_ents", "log_entries",
    "memory_storage", "check_ready_responses",
]


class NullLogger:
    """Discards raftcore's log lines (they cost time in tight loops)."""

    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


def msg(type: MessageType, from_: int = 0, to: int = 0, **kw: Any) -> Message:
    """A Message; `from_`/`to` first because every test names them."""
    return Message(type=type, from_=from_, to=to, **kw)


def entries_with_terms(*terms: int, start: int = 1) -> list[Entry]:
    """etcd's index(start).terms(...): one empty entry per term at consecutive indexes."""
    return [Entry(index=start + i, term=t) for i, t in enumerate(terms)]


# -- etcd's newTestMemoryStorage / newTestConfig / newTestRaft --------------------------------
def new_storage(peers: Iterable[int] = (), learners: Iterable[int] = (),
                entries: Sequence[Entry] = (), hard_state: HardState | None = None) -> MemoryStorage:
    """A MemoryStorage whose (empty, index-0) snapshot carries the configuration, as
    etcd's newTestMemoryStorage(withPeers(...), withLearners(...)), holding `entries`
    and `hard_state` if given."""
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
    """etcd's newTestConfig; `kw` overrides any other Config field."""
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    kw.setdefault("max_size_per_msg", NO_LIMIT)
    kw.setdefault("max_inflight_msgs", 256)
    kw.setdefault("rng", random.Random(id))
    kw.setdefault("logger", NullLogger())
    return Config(id=id, storage=storage, election_tick=election, heartbeat_tick=heartbeat, **kw)


def new_raft(id: int, election: int, heartbeat: int, storage: MemoryStorage, **kw: Any) -> Raft:
    """etcd's newTestRaft."""
    return Raft(new_config(id, storage, election, heartbeat, **kw))


def new_rawnode(id: int, election: int, heartbeat: int, storage: MemoryStorage, **kw: Any) -> RawNode:
    """etcd's newTestRawNode."""
    return RawNode(new_config(id, storage, election, heartbeat, **kw))


# -- driving a bare Raft -----------------------------------------------------------------------
def persist(r: Raft) -> None:
    """Write r's unstable snapshot, entries and hard state to its MemoryStorage and
    mark them stable, as an application does with a Ready before advance()."""
    log = r.raft_log
    storage = memory_storage(r)
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


def next_ents(r: Raft) -> list[Entry]:
    """etcd's nextEnts: persist and release held responses (as read_messages, leaving
    the outbox alone), then return every committed entry not yet applied and mark it
    applied (conf changes are not applied to the configuration)."""
    advance_messages_after_append(r)
    log = r.raft_log
    ents = log.next_committed_ents()
    if ents:
        log.accept_applying(ents[-1].index)
        r.applied_to(ents[-1].index)
    return ents


def log_entries(r: Raft | RawNode) -> list[tuple[int, int, bytes]]:
    """(index, term, data) of every entry in the node's log (etcd's ltoa, comparably)."""
    rr = r.raft if isinstance(r, RawNode) else r
    return [(e.index, e.term, e.data) for e in rr.raft_log.all_entries()]


def memory_storage(r: Raft) -> MemoryStorage:
    """The MemoryStorage r runs on (these helpers persist into it)."""
    storage = r.raft_log.storage
    if not isinstance(storage, MemoryStorage):
        raise TypeError(f"node {r.id} does not run on a MemoryStorage")
    return storage


# -- the held-responses check -------------------------------------------------------------------
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
