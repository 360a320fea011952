"""RawNode and the Ready contract, ported from etcd-io/raft's rawnode_test.go and
node_test.go, plus the checks this port makes explicit: responses are never handed
out before the state they acknowledge is persisted (thesis §3.8), local message types
are refused by step(), and Config validation names the bad field.
"""

from __future__ import annotations

import random

import pytest

from raftcore import (
    Config,
    ConfigError,
    MemoryStorage,
    RaftError,
    RawNode,
    ReadOnlyOption,
    StateType,
    StepLocalMsgError,
)
from raftcore.raftpb import (
    ConfChange,
    ConfChangeAddNode,
    Entry,
    EntryConfChange,
    HardState,
    Message,
    MessageType,
    MsgApp,
    MsgAppResp,
    MsgBeat,
    MsgCheckQuorum,
    MsgHeartbeatResp,
    MsgHup,
    MsgPreVote,
    MsgPreVoteResp,
    MsgProp,
    MsgSnapStatus,
    MsgUnreachable,
    MsgVote,
    MsgVoteResp,
    Snapshot,
)
from raftcore.testing import NullLogger, Network, check_ready_responses, msg, new_config, new_storage

LOCAL_TYPES = {MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus, MsgCheckQuorum}


def persist_ready(s: MemoryStorage, rd) -> None:
    if rd.snapshot is not None:
        s.apply_snapshot(rd.snapshot)
    if rd.entries:
        s.append(rd.entries)
    if rd.hard_state is not None:
        s.set_hard_state(rd.hard_state)


# -- restart (node_test.go TestNodeRestart / TestNodeRestartFromSnapshot) ----------------------------
def test_node_restart() -> None:
    entries = [Entry(term=1, index=1), Entry(term=1, index=2, data=b"foo")]
    s = new_storage([1], entries=entries, hard_state=HardState(term=1, commit=1))
    rn = RawNode(new_config(1, s))
    rd = rn.ready()
    # Nothing changed relative to what is persisted: no HardState, nothing to sync;
    # only the committed entries to apply (up to the persisted commit index).
    assert rd.hard_state is None
    assert rd.soft_state is None
    assert rd.entries == []
    assert list(rd.committed_entries) == entries[:1]
    assert rd.messages == []
    assert not rd.must_sync
    rn.advance(rd)
    assert not rn.has_ready()


def test_node_restart_from_snapshot() -> None:
    snap = Snapshot()
    snap.metadata.index, snap.metadata.term = 2, 1
    snap.metadata.conf_state.voters.extend([1, 2])
    entries = [Entry(term=1, index=3, data=b"foo")]
    s = MemoryStorage()
    s.set_hard_state(HardState(term=1, commit=3))
    s.apply_snapshot(snap)
    s.append(entries)
    rn = RawNode(new_config(1, s))
    rd = rn.ready()
    assert rd.hard_state is None
    assert rd.snapshot is None
    assert list(rd.committed_entries) == entries
    assert not rd.must_sync
    rn.advance(rd)
    assert not rn.has_ready()


def test_restart_with_applied_skips_applied_entries() -> None:
    entries = [Entry(term=1, index=i, data=b"e%d" % i) for i in range(1, 5)]
    s = new_storage([1], entries=entries, hard_state=HardState(term=1, commit=4))
    rn = RawNode(new_config(1, s, applied=2))
    rd = rn.ready()
    assert [e.index for e in rd.committed_entries] == [3, 4]
    rn.advance(rd)
    assert not rn.has_ready()


# -- bootstrap --------------------------------------------------------------------------------------
def test_rawnode_bootstrap() -> None:
    s = MemoryStorage()
    rn = RawNode(new_config(1, s))
    rn.bootstrap([1, 2, 3])
    assert rn.has_ready()
    rd = rn.ready()
    # One ConfChangeAddNode per peer at term 1, indexes 1..N: to persist, and already
    # committed, so also to apply.
    want = [(i, 1, EntryConfChange, p) for i, p in enumerate([1, 2, 3], 1)]
    got = [(e.index, e.term, e.type, ConfChange.FromString(e.data).node_id) for e in rd.entries]
    assert got == want
    assert [(e.index, e.term, e.type, ConfChange.FromString(e.data).node_id)
            for e in rd.committed_entries] == want
    assert all(ConfChange.FromString(e.data).type == ConfChangeAddNode for e in rd.entries)
    assert rd.hard_state == HardState(term=1, vote=0, commit=3)
    assert rd.must_sync
    persist_ready(s, rd)
    # The configuration already holds them: applying them again changes nothing.
    for e in rd.committed_entries:
        cs = rn.apply_conf_change(ConfChange.FromString(e.data))
        assert sorted(cs.voters) == [1, 2, 3]
        assert list(cs.learners) == []
    rn.advance(rd)
    assert not rn.has_ready()
    st = rn.status()
    assert (st.term, st.commit, st.applied, st.voters) == (1, 3, 3, (1, 2, 3))

    # MemoryStorage keeps a ConfState only in its snapshot: a restart without one
    # (applied=0) gets the conf changes again to apply, and so the configuration.
    rn2 = RawNode(new_config(1, s))
    assert rn2.status().voters == ()
    rd = rn2.ready()
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]
    assert rd.hard_state is None and rd.entries == []
    for e in rd.committed_entries:
        rn2.apply_conf_change(ConfChange.FromString(e.data))
    rn2.advance(rd)
    assert rn2.status().voters == (1, 2, 3)
    assert not rn2.has_ready()


def test_rawnode_bootstrap_refusals() -> None:
    rn = RawNode(new_config(1, MemoryStorage()))
    with pytest.raises(RaftError):
        rn.bootstrap([])
    with pytest.raises(RaftError):
        rn.bootstrap([1, 1])
    s = new_storage([1], entries=[Entry(term=1, index=1)], hard_state=HardState(term=1, commit=1))
    with pytest.raises(RaftError):
        RawNode(new_config(1, s)).bootstrap([1])


def test_rawnode_single_node_bootstrap_campaign_propose() -> None:
    # etcd's TestRawNodeStart, on bootstrap(): campaign, become leader, commit a
    # proposal; each Ready is processed per the contract.
    s = MemoryStorage()
    rn = RawNode(new_config(1, s))
    rn.bootstrap([1])
    nt = Network(rn)
    nt[1].drain()
    rn.campaign()
    nt[1].drain()
    assert rn.status().raft_state == StateType.LEADER
    rn.propose(b"foo")
    nt[1].drain()
    assert nt[1].applied_data() == [b"foo"]
    st = rn.status()
    assert st.commit == st.applied == 3  # 1 conf change, the empty entry, foo
    assert not rn.has_ready()


def test_joining_node_never_campaigns() -> None:
    # A node on empty storage without bootstrap waits to be contacted.
    rn = RawNode(new_config(1, MemoryStorage()))
    for _ in range(100):
        rn.tick()
    rn.campaign()
    assert rn.status().raft_state == StateType.FOLLOWER
    assert rn.status().term == 0


# -- step -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [v for _, v in MessageType.items()], ids=[n for n, _ in MessageType.items()])
def test_rawnode_step(t: int) -> None:
    # etcd's TestRawNodeStep: local-only types are refused; every other type, even
    # with all fields zero, is stepped without tripping an assertion.
    s = MemoryStorage()
    snap = Snapshot()
    snap.metadata.index, snap.metadata.term = 1, 1
    snap.metadata.conf_state.voters.append(1)
    s.apply_snapshot(snap)
    s.set_hard_state(HardState(term=1, commit=1))
    rn = RawNode(new_config(1, s))
    if t in LOCAL_TYPES:
        with pytest.raises(StepLocalMsgError):
            rn.step(Message(type=t))
    else:
        try:
            rn.step(Message(type=t))
        except RaftError as e:
            # A proposal without a leader is dropped: the one error allowed here.
            assert t == MsgProp, e


def test_rawnode_step_ignores_responses_from_unknown_peers() -> None:
    nt = Network(None, None, None)
    nt.send(msg(MsgHup, 1, 1))
    rn = nt[1].rn
    r = rn.raft
    assert r.state == StateType.LEADER
    before = (r.term, r.raft_log.committed, sorted(r.prs.progress))
    for t in (MsgAppResp, MsgHeartbeatResp, MsgVoteResp, MsgPreVoteResp, MsgUnreachable):
        if t in LOCAL_TYPES:
            continue
        rn.step(Message(type=t, from_=99, to=1, term=r.term, index=5))
    # Even a higher term from an unknown peer's response is ignored.
    rn.step(Message(type=MsgAppResp, from_=99, to=1, term=r.term + 5))
    assert (r.term, r.raft_log.committed, sorted(r.prs.progress)) == before
    assert r.state == StateType.LEADER
    assert r.msgs == []


# -- held responses (thesis §3.8) -------------------------------------------------------------------
def _follower(id: int = 2, peers=(1, 2, 3)) -> tuple[RawNode, MemoryStorage]:
    s = new_storage(list(peers))
    return RawNode(new_config(id, s)), s


def test_follower_append_ack_waits_for_its_entries() -> None:
    rn, s = _follower()
    rn.step(msg(MsgApp, 1, 2, term=1, index=0, log_term=0, commit=0,
                entries=[Entry(index=1, term=1), Entry(index=2, term=1, data=b"x")]))
    rd = rn.ready()
    assert [e.index for e in rd.entries] == [1, 2]
    assert rd.must_sync
    # The ack for entries this Ready has yet to persist is not in it.
    assert [m for m in rd.messages if m.type == MsgAppResp] == []
    check_ready_responses(2, s, rd)
    persist_ready(s, rd)
    rn.advance(rd)
    rd = rn.ready()
    acks = [m for m in rd.messages if m.type == MsgAppResp]
    assert [(m.to, m.index, m.reject) for m in acks] == [(1, 2, False)]
    check_ready_responses(2, s, rd)
    rn.advance(rd)


def test_persisted_hands_over_the_ack_before_the_apply() -> None:
    """persisted(rd) returns the held ack as soon as rd is durable (before its committed
    entries are applied); advance(rd) then neither repeats it nor loses the apply."""
    rn, s = _follower()
    rn.step(msg(MsgApp, 1, 2, term=1, index=0, log_term=0, commit=1,
                entries=[Entry(index=1, term=1), Entry(index=2, term=1, data=b"x")]))
    rd = rn.ready()
    assert [m for m in rd.messages if m.type == MsgAppResp] == []
    persist_ready(s, rd)
    acks = rn.persisted(rd)
    assert [(m.type, m.to, m.index, m.reject) for m in acks] == [(MsgAppResp, 1, 2, False)]
    assert rn.persisted(rd) == []  # told twice: nothing twice
    assert rn.raft.raft_log.applied == 0  # not applied yet: the apply comes after the ack
    rn.advance(rd)
    assert rn.raft.raft_log.applied == 1
    assert not rn.has_ready() or [m for m in rn.ready().messages if m.type == MsgAppResp] == []


def test_persisted_steps_a_leaders_own_ack() -> None:
    """A single-voter leader counts its own entry as durable at persisted(rd): the
    commit moves before advance(rd)."""
    s = new_storage([1])
    rn = RawNode(new_config(1, s))
    rn.campaign()
    while rn.raft.state != StateType.LEADER or rn.raft.raft_log.committed == 0:
        rd = rn.ready()
        persist_ready(s, rd)
        rn.advance(rd)
    rn.propose(b"x")
    rd = rn.ready()
    last = rd.entries[-1].index
    persist_ready(s, rd)
    assert rn.raft.raft_log.committed < last
    rn.persisted(rd)
    assert rn.raft.raft_log.committed == last
    rn.advance(rd)
    assert [e.index for e in rn.ready().committed_entries][-1] == last


def test_vote_response_waits_for_the_vote() -> None:
    rn, s = _follower()
    rn.step(msg(MsgVote, 1, 2, term=5, index=0, log_term=0))
    rd = rn.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) == (5, 1)
    assert rd.must_sync
    assert [m for m in rd.messages if m.type == MsgVoteResp] == []
    persist_ready(s, rd)
    rn.advance(rd)
    rd = rn.ready()
    assert [(m.type, m.to, m.term, m.reject) for m in rd.messages] == [(MsgVoteResp, 1, 5, False)]
    check_ready_responses(2, s, rd)
    rn.advance(rd)


def test_vote_rejection_at_new_term_waits_for_the_term() -> None:
    # A rejection at a higher term than persisted also waits: it tells the candidate
    # our (new) term, which must survive a crash.
    s = new_storage([1, 2, 3], entries=[Entry(index=1, term=1), Entry(index=2, term=1)],
                    hard_state=HardState(term=1, commit=0))
    rn = RawNode(new_config(2, s))
    rn.step(msg(MsgVote, 1, 2, term=4, index=1, log_term=1))  # log behind ours
    rd = rn.ready()
    assert rd.hard_state is not None and rd.hard_state.term == 4 and rd.hard_state.vote == 0
    assert [m for m in rd.messages if m.type == MsgVoteResp] == []
    persist_ready(s, rd)
    rn.advance(rd)
    rd = rn.ready()
    assert [(m.type, m.term, m.reject) for m in rd.messages] == [(MsgVoteResp, 4, True)]
    rn.advance(rd)


def test_response_released_in_same_ready_when_nothing_to_persist() -> None:
    # A duplicate append acknowledges what is already durable: the ack goes out at once.
    rn, s = _follower()
    rn.step(msg(MsgApp, 1, 2, term=1, index=0, log_term=0, entries=[Entry(index=1, term=1)]))
    rd = rn.ready()
    persist_ready(s, rd)
    rn.advance(rd)
    rn.advance(rd2 := rn.ready())  # carries the first ack
    assert [m.type for m in rd2.messages] == [MsgAppResp]
    rn.step(msg(MsgApp, 1, 2, term=1, index=0, log_term=0, entries=[Entry(index=1, term=1)]))
    rd = rn.ready()
    assert rd.entries == [] and rd.hard_state is None
    assert [(m.type, m.index) for m in rd.messages] == [(MsgAppResp, 1)]
    rn.advance(rd)


def test_candidate_counts_own_vote_only_after_persisting_it() -> None:
    s = new_storage([1])
    rn = RawNode(new_config(1, s))
    rn.campaign()
    rd = rn.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) == (1, 1)
    # Its own vote is not durable yet: a single-node candidate is not leader yet.
    assert rn.raft.state == StateType.CANDIDATE
    persist_ready(s, rd)
    rn.advance(rd)
    assert rn.raft.state == StateType.LEADER


def test_leader_counts_own_entries_only_after_persisting_them() -> None:
    s = new_storage([1])
    rn = RawNode(new_config(1, s))
    nt = Network(rn)
    rn.campaign()
    nt[1].drain()
    commit = rn.status().commit
    rn.propose(b"x")
    rd = rn.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    # The proposal is not committed (not even by a single node) until persisted.
    assert all(e.data != b"x" for e in rd.committed_entries)
    assert rn.raft.raft_log.committed == commit
    persist_ready(s, rd)
    rn.advance(rd)
    rd = rn.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    rn.advance(rd)


def test_pre_vote_response_is_held_and_released() -> None:
    rn, s = _follower()
    rn.raft.pre_vote = True
    rn.step(msg(MsgPreVote, 1, 2, term=1, index=0, log_term=0))
    rd = rn.ready()
    # A pre-vote changes no persistent state: the answer goes out in this Ready.
    assert rd.hard_state is None
    assert [(m.type, m.term, m.reject) for m in rd.messages] == [(MsgPreVoteResp, 1, False)]
    rn.advance(rd)


def test_network_readies_never_carry_unpersisted_responses() -> None:
    # A busier run: elections, a partition, proposals, recovery; the network checks
    # every Ready's responses against what its storage held before persisting it.
    nt = Network(None, None, None, None, None)
    nt.send(msg(MsgHup, 1, 1))
    for i in range(5):
        nt.send(msg(MsgProp, 1, 1, entries=[Entry(data=b"a%d" % i)]))
    nt.isolate(1)
    nt.send(msg(MsgHup, 2, 2))
    for i in range(5):
        nt.send(msg(MsgProp, 2, 2, entries=[Entry(data=b"b%d" % i)]))
        nt.send(msg(MsgProp, 1, 1, entries=[Entry(data=b"lost%d" % i)]))
    nt.recover()
    nt.send(msg(MsgBeat, 2, 2))
    nt.send(msg(MsgProp, 2, 2, entries=[Entry(data=b"c")]))
    want = [b"a%d" % i for i in range(5)] + [b"b%d" % i for i in range(5)] + [b"c"]
    for id in nt.ids:
        assert nt[id].applied_data() == want, f"node {id}"
    n = sum(len(node.readies) for node in nt.nodes())
    assert n > 50  # the check ran on many Readys


def test_the_held_response_check_catches_early_responses() -> None:
    # The network's check itself: an ack beyond the persisted log, or a vote granted
    # before it is persisted, is flagged.
    from raftcore import Ready
    s = new_storage([1, 2, 3])
    with pytest.raises(AssertionError):
        check_ready_responses(2, s, Ready(messages=[msg(MsgAppResp, 2, 1, index=1)]))
    with pytest.raises(AssertionError):
        check_ready_responses(2, s, Ready(messages=[msg(MsgVoteResp, 2, 1, term=1)]))
    s.set_hard_state(HardState(term=1, vote=1))
    check_ready_responses(2, s, Ready(messages=[msg(MsgVoteResp, 2, 1, term=1)]))


def test_ready_twice_without_advance_is_refused() -> None:
    rn, _ = _follower()
    rn.step(msg(MsgApp, 1, 2, term=1, index=0, log_term=0, entries=[Entry(index=1, term=1)]))
    rn.ready()
    with pytest.raises(RaftError):
        rn.ready()


# -- Config validation ------------------------------------------------------------------------------
class _BadLogger:
    def debug(self, msg: str) -> None: ...


class _NoStorage:
    def initial_state(self): ...


@pytest.mark.parametrize(
    "field,kw",
    [
        ("id", {"id": 0}),
        ("id", {"id": -3}),
        ("id", {"id": 1 << 64}),
        ("id", {"id": "1"}),
        ("heartbeat_tick", {"heartbeat_tick": 0}),
        ("election_tick", {"election_tick": 1, "heartbeat_tick": 1}),
        ("election_tick", {"election_tick": 2.5}),
        ("election_tick", {"election_tick": True}),
        ("storage", {"storage": None}),
        ("storage", {"storage": _NoStorage()}),
        ("applied", {"applied": -1}),
        ("max_size_per_msg", {"max_size_per_msg": -1}),
        ("max_committed_size_per_ready", {"max_committed_size_per_ready": -1}),
        ("max_uncommitted_entries_size", {"max_uncommitted_entries_size": -1}),
        ("max_inflight_msgs", {"max_inflight_msgs": 0}),
        ("max_inflight_bytes", {"max_inflight_bytes": -1}),
        ("max_inflight_bytes", {"max_inflight_bytes": 10, "max_size_per_msg": 100}),
        ("read_only_option", {"read_only_option": 1}),
        ("read_only_option", {"read_only_option": ReadOnlyOption.LEASE_BASED, "check_quorum": False}),
        ("rng", {"rng": 42}),
        ("logger", {"logger": _BadLogger()}),
    ],
)
def test_config_validation(field: str, kw: dict) -> None:
    args = {"id": 1, "storage": MemoryStorage()}
    args.update(kw)
    with pytest.raises(ConfigError) as ei:
        Config(**args)
    assert f"Config.{field}" in str(ei.value)
    # A ConfigError is both a RaftError and a ValueError.
    assert isinstance(ei.value, RaftError) and isinstance(ei.value, ValueError)


def test_config_valid_and_keyword_only() -> None:
    c = Config(id=1, storage=MemoryStorage(), rng=random.Random(1), logger=NullLogger(),
               read_only_option=ReadOnlyOption.LEASE_BASED, check_quorum=True,
               max_inflight_bytes=1 << 20)
    assert c.election_tick == 10 and c.heartbeat_tick == 1 and c.pre_vote and c.check_quorum
    with pytest.raises(TypeError):
        Config(1, MemoryStorage())  # type: ignore[misc]


def test_rawnode_with_default_config_elects_itself() -> None:
    # No test overrides: the library's defaults work on a single node.
    s = new_storage([1])
    rn = RawNode(Config(id=1, storage=s, rng=random.Random(3), logger=NullLogger()))
    for _ in range(2 * rn.raft.election_timeout):
        rn.tick()
        while rn.has_ready():
            rd = rn.ready()
            persist_ready(s, rd)
            rn.advance(rd)
    assert rn.status().raft_state == StateType.LEADER
    assert rn.status().voters == (1,)
