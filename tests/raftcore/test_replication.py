"""Log replication scenarios, ported from etcd-io/raft's raft_test.go,
raft_paper_test.go and raft_flow_control_test.go (paper §5.3 log matching, §5.4.2
commit only of current-term entries, Fig. 7 and Fig. 8; etcd's fast log rejection and
inflight flow control).

Differences from etcd accounted for here: a leader broadcasts MsgApps for proposals
lazily (`flush_bcast`, done by `read_messages` and by RawNode), so a burst of
proposals becomes one MsgApp per follower; and responses wait for persistence
(`read_messages` persists before releasing them).
"""

from __future__ import annotations

import pytest

from raftcore import ProposalDroppedError, StateType
from raftcore.raftpb import (
    Entry,
    HardState,
    MsgApp,
    MsgAppResp,
    MsgBeat,
    MsgHeartbeat,
    MsgHeartbeatResp,
    MsgHup,
    MsgProp,
    MsgVote,
    MsgVoteResp,
)
from raftcore.testing import (
    BLACK_HOLE,
    Network,
    advance_messages_after_append,
    entries_with_terms,
    log_entries,
    msg,
    new_raft,
    new_rawnode,
    new_storage,
    read_messages,
)
from raftcore.tracker import ProgressState

L, F = StateType.LEADER, StateType.FOLLOWER


def hup(id: int):
    return msg(MsgHup, id, id)


def prop(to: int, data: bytes = b"somedata", from_: int | None = None):
    return msg(MsgProp, to if from_ is None else from_, to, entries=[Entry(data=data)])


# -- TestLogReplication, TestSingleNodeCommit ---------------------------------------------------
@pytest.mark.parametrize(
    "msgs,wcommitted",
    [
        ([prop(1)], 2),
        ([prop(1), msg(MsgHup, 1, 2), prop(2)], 4),
    ],
    ids=["leader-1", "leader-change"],
)
def test_log_replication(msgs, wcommitted: int) -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    for m in msgs:
        nt.send(m)
    props = [m.entries[0].data for m in msgs if m.type == MsgProp]
    for id in nt.ids:
        assert nt[id].raft.raft_log.committed == wcommitted, f"node {id}"
        assert nt[id].applied_data() == props, f"node {id}"


def test_single_node_commit() -> None:
    nt = Network(None)
    nt.send(hup(1))
    nt.send(prop(1, b"some data"))
    nt.send(prop(1, b"some data"))
    assert nt[1].raft.raft_log.committed == 3


# -- commit rules (§5.4.2) -------------------------------------------------------------------------
def _five_with_uncommitted_tail() -> Network:
    nt = Network(None, None, None, None, None)
    nt.send(hup(1))
    # 1 cannot reach 3, 4, 5: its proposals reach 2 only and don't commit.
    for other in (3, 4, 5):
        nt.cut(1, other)
    nt.send(prop(1, b"some data"))
    nt.send(prop(1, b"some data"))
    assert nt[1].raft.raft_log.committed == 1
    return nt


def test_cannot_commit_without_new_term_entry() -> None:
    nt = _five_with_uncommitted_tail()
    nt.recover()
    # Keep the new leader's empty entry from being replicated.
    nt.ignore(MsgApp)
    nt.send(hup(2))
    # Entries of an earlier term are not committed by counting replicas (§5.4.2).
    r2 = nt[2].raft
    assert r2.raft_log.committed == 1

    nt.recover()
    nt.send(msg(MsgBeat, 2, 2))
    nt.send(prop(2, b"some data"))
    assert r2.raft_log.committed == 5


def test_commit_without_new_term_entry() -> None:
    nt = _five_with_uncommitted_tail()
    nt.recover()
    # The new leader's empty entry of its own term commits everything before it.
    nt.send(hup(2))
    assert nt[1].raft.raft_log.committed == 4


def test_leader_only_commits_log_from_current_term() -> None:
    # Paper Fig. 8: a leader counts replicas only for an entry of its own term.
    for index, wcommit in ((1, 0), (2, 0), (3, 3)):
        storage = new_storage([1, 2], entries=[Entry(term=1, index=1), Entry(term=2, index=2)],
                              hard_state=HardState(term=2))
        r = new_raft(1, 10, 1, storage)
        r.become_candidate()
        r.become_leader()  # term 3, its empty entry at index 3
        read_messages(r)
        r.step(msg(MsgProp, 1, 1, entries=[Entry()]))
        r.step(msg(MsgAppResp, 2, 1, term=r.term, index=index))
        advance_messages_after_append(r)
        assert r.raft_log.committed == wcommit, f"ack of index {index}"


# -- TestLeaderSyncFollowerLog (paper Fig. 7) ------------------------------------------------------
_FIG7_LEADER = entries_with_terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
_FIG7_FOLLOWERS = {
    "a": entries_with_terms(1, 1, 1, 4, 4, 5, 5, 6, 6),
    "b": entries_with_terms(1, 1, 1, 4),
    "c": entries_with_terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),
    "d": entries_with_terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),
    "e": entries_with_terms(1, 1, 1, 4, 4, 4, 4),
    "f": entries_with_terms(1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
}


@pytest.mark.parametrize("follower_log", list(_FIG7_FOLLOWERS.values()), ids=list(_FIG7_FOLLOWERS))
def test_leader_sync_follower_log(follower_log) -> None:
    # Whatever the follower's log (missing, extra or conflicting entries), the leader
    # makes it identical to its own (§5.3).
    term = 8
    lead_storage = new_storage([1, 2, 3], entries=_FIG7_LEADER,
                               hard_state=HardState(term=term, commit=len(_FIG7_LEADER)))
    lead = new_rawnode(1, 10, 1, lead_storage)
    follower = new_rawnode(2, 10, 1, new_storage([1, 2, 3], entries=follower_log,
                                                 hard_state=HardState(term=term - 1)))
    # Three nodes: the follower may have the more up-to-date log, so the leader may
    # need node 3's vote, which we inject.
    nt = Network(lead, follower, BLACK_HOLE)
    nt.send(hup(1))
    nt.send(msg(MsgVoteResp, 3, 1, term=term + 1))
    assert lead.raft.state == L
    nt.send(msg(MsgProp, 1, 1, entries=[Entry()]))
    assert log_entries(follower) == log_entries(lead)
    assert follower.raft.raft_log.committed == lead.raft.raft_log.committed


# -- proposals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "peers,success",
    [
        ((None, None, None), True),
        ((None, None, BLACK_HOLE), True),
        ((None, BLACK_HOLE, BLACK_HOLE), False),
        ((None, BLACK_HOLE, BLACK_HOLE, None), False),
        ((None, BLACK_HOLE, BLACK_HOLE, None, None), True),
    ],
)
def test_proposal(peers, success: bool) -> None:
    nt = Network(*peers)
    data = b"somedata"
    nt.send(hup(1))
    if success:
        nt.send(prop(1, data))
    else:
        # Without a leader the proposal is dropped, loudly.
        with pytest.raises(ProposalDroppedError):
            nt[1].raft.step(prop(1, data))
    want = [(1, 1, b""), (2, 1, data)] if success else []
    for node in nt.nodes():
        assert log_entries(node.raft) == want, f"node {node.id}"
    assert nt[1].raft.term == 1


@pytest.mark.parametrize("peers", [(None, None, None), (None, None, BLACK_HOLE)])
def test_proposal_by_proxy(peers) -> None:
    nt = Network(*peers)
    nt.send(hup(1))
    # A follower forwards the proposal to the leader.
    nt.send(prop(2, b"somedata"))
    for node in nt.nodes():
        assert log_entries(node.raft) == [(1, 1, b""), (2, 1, b"somedata")], f"node {node.id}"
    assert nt[1].raft.term == 1


def test_proposal_forwarding_and_disable() -> None:
    nodes = [new_rawnode(i, 10, 1, new_storage([1, 2, 3]), disable_proposal_forwarding=(i == 3))
             for i in (1, 2, 3)]
    nt = Network(*nodes)
    nt.send(hup(1))
    r2, r3 = nt[2].raft, nt[3].raft
    ents = [Entry(data=b"testdata")]

    r2.step(msg(MsgProp, 2, 2, entries=ents))
    assert len(r2.msgs) == 1
    assert (r2.msgs[0].type, r2.msgs[0].to, r2.msgs[0].term) == (MsgProp, 1, 0)

    with pytest.raises(ProposalDroppedError):
        r3.step(msg(MsgProp, 3, 3, entries=ents))
    assert r3.msgs == []
    # Through RawNode: the forwarding follower's proposal commits, the other's is refused.
    nodes[1].propose(b"via 2")
    nt.send(*nt[2].drain())
    assert b"via 2" in nt[1].applied_data()
    with pytest.raises(ProposalDroppedError):
        nodes[2].propose(b"via 3")


def test_follower_without_leader_drops_proposal() -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    with pytest.raises(ProposalDroppedError):
        r.step(prop(1))
    assert read_messages(r) == []


# -- handling of MsgApp and MsgHeartbeat (paper §5.3) -----------------------------------------------
@pytest.mark.parametrize(
    "m,windex,wcommit,wreject",
    [
        # Reply false if the log has no entry at index whose term matches log_term.
        (msg(MsgApp, term=2, log_term=3, index=2, commit=3), 2, 0, True),  # mismatch
        (msg(MsgApp, term=2, log_term=3, index=3, commit=3), 2, 0, True),  # absent
        # Delete a conflicting entry and all that follow it; append new entries.
        (msg(MsgApp, term=2, log_term=1, index=1, commit=1), 2, 1, False),
        (msg(MsgApp, term=2, log_term=0, index=0, commit=1, entries=[Entry(index=1, term=2)]), 1, 1, False),
        (msg(MsgApp, term=2, log_term=2, index=2, commit=3,
             entries=[Entry(index=3, term=2), Entry(index=4, term=2)]), 4, 3, False),
        (msg(MsgApp, term=2, log_term=2, index=2, commit=4, entries=[Entry(index=3, term=2)]), 3, 3, False),
        (msg(MsgApp, term=2, log_term=1, index=1, commit=4, entries=[Entry(index=2, term=2)]), 2, 2, False),
        # Commit up to min(leader commit, index of the last new entry).
        (msg(MsgApp, term=1, log_term=1, index=1, commit=3), 2, 1, False),
        (msg(MsgApp, term=1, log_term=1, index=1, commit=3, entries=[Entry(index=2, term=2)]), 2, 2, False),
        (msg(MsgApp, term=2, log_term=2, index=2, commit=3), 2, 2, False),
        (msg(MsgApp, term=2, log_term=2, index=2, commit=4), 2, 2, False),
    ],
)
def test_handle_msg_app(m, windex: int, wcommit: int, wreject: bool) -> None:
    r = new_raft(1, 10, 1, new_storage([1], entries=entries_with_terms(1, 2)))
    r.become_follower(2, 0)
    r._handle_append_entries(m)
    assert r.raft_log.last_index() == windex
    assert r.raft_log.committed == wcommit
    ms = read_messages(r)
    assert len(ms) == 1
    assert ms[0].type == MsgAppResp
    assert ms[0].reject == wreject


@pytest.mark.parametrize("commit,wcommit", [(3, 3), (1, 2)], ids=["advance", "never-decrease"])
def test_handle_heartbeat(commit: int, wcommit: int) -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2], entries=entries_with_terms(1, 2, 3)))
    r.become_follower(2, 2)
    r.raft_log.commit_to(2)
    r._handle_heartbeat(msg(MsgHeartbeat, 2, 1, term=2, commit=commit))
    assert r.raft_log.committed == wcommit
    ms = read_messages(r)
    assert len(ms) == 1
    assert ms[0].type == MsgHeartbeatResp


# -- TestFastLogRejection --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "leader_log,follower_log,follower_compact,hint_term,hint_index,next_term,next_index",
    [
        # The leader finds the conflict quickly: (index 7, term 4) is rejected, then
        # it appends at (index 3, term 2).
        ((1, 2, 2, 4, 4, 4, 4), (1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), 0, 3, 7, 2, 3),
        ((1, 2, 2, 3, 4, 4, 4, 5), (1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), 0, 3, 8, 3, 4),
        # The follower finds the conflict quickly.
        ((1, 1, 1, 1), (1, 2, 2, 4), 0, 1, 1, 1, 1),
        # ... with a longer uncommitted tail on the leader,
        ((1, 1, 1, 1, 1, 1), (1, 2, 2, 4), 0, 1, 1, 1, 1),
        # ... or on the follower.
        ((1, 1, 1, 1), (1, 2, 2, 4, 4, 4), 0, 1, 1, 1, 1),
        # No conflict: the follower is just behind.
        ((1, 1, 1, 4, 5), (1, 1, 1, 4), 0, 4, 4, 4, 4),
        # etcd's example in stepLeader.
        ((2, 5, 5, 5, 5, 5, 5, 5, 5), (2, 4, 4, 4, 4, 4), 0, 4, 6, 2, 1),
        # etcd's example in handleAppendEntries.
        ((2, 2, 2, 2, 2), (2, 4, 4, 4, 4, 4, 4, 4), 0, 2, 1, 2, 1),
        # A stale MsgApp reaching a follower that compacted past its index: the
        # rejection hints term 0, and the leader steps back one entry.
        ((1, 1, 3), (1, 1, 3, 3, 3), 5, 0, 3, 1, 2),
    ],
)
def test_fast_log_rejection(leader_log, follower_log, follower_compact: int, hint_term: int,
                            hint_index: int, next_term: int, next_index: int) -> None:
    lents = entries_with_terms(*leader_log)
    last = lents[-1]
    s1 = new_storage([1, 2, 3], entries=lents, hard_state=HardState(term=last.term - 1, commit=last.index))
    n1 = new_raft(1, 10, 1, s1)
    n1.become_candidate()  # bumps the term to last.term
    n1.become_leader()

    s2 = new_storage([1, 2, 3], entries=entries_with_terms(*follower_log),
                     hard_state=HardState(term=last.term, vote=1, commit=0))
    n2 = new_raft(2, 10, 1, s2)
    if follower_compact:
        # Not a realistic state (commit is still 0): it exercises the edge case.
        s2.compact(follower_compact)

    n2.step(msg(MsgHeartbeat, 1, 2))
    ms = read_messages(n2)
    assert len(ms) == 1 and ms[0].type == MsgHeartbeatResp

    n1.step(ms[0])
    ms = read_messages(n1)
    assert len(ms) == 1 and ms[0].type == MsgApp

    n2.step(ms[0])
    ms = read_messages(n2)
    assert len(ms) == 1 and ms[0].type == MsgAppResp
    assert ms[0].reject
    assert (ms[0].log_term, ms[0].reject_hint) == (hint_term, hint_index)

    n1.step(ms[0])
    ms = read_messages(n1)
    assert (ms[0].log_term, ms[0].index) == (next_term, next_index)


# -- flow control (raft_flow_control_test.go) ------------------------------------------------------
def _leader_with_replicating_follower():
    r = new_raft(1, 5, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    pr2 = r.prs.progress[2]
    pr2.become_replicate()
    return r, pr2


def test_msg_app_flow_control_full() -> None:
    r, pr2 = _leader_with_replicating_follower()
    # The window fills with one MsgApp per flushed proposal...
    for _ in range(r.prs.max_inflight):
        r.step(prop(1))
        ms = read_messages(r)
        assert len(ms) == 1 and ms[0].type == MsgApp
    assert pr2.is_paused()
    # ...and once it is full, nothing more is sent.
    for _ in range(10):
        r.step(prop(1))
        assert read_messages(r) == []


def test_msg_app_lazy_bcast_batches_proposals() -> None:
    # The lazy broadcast: proposals between two flushes go out as one MsgApp per
    # follower, occupying one inflight slot.
    r, pr2 = _leader_with_replicating_follower()
    for _ in range(10):
        r.step(prop(1))
    ms = read_messages(r)
    assert [m.type for m in ms] == [MsgApp]
    assert len(ms[0].entries) == 11  # the leader's empty entry and 10 proposals
    assert pr2.inflights.count() == 1


def test_msg_app_flow_control_move_forward() -> None:
    r, pr2 = _leader_with_replicating_follower()
    for _ in range(r.prs.max_inflight):
        r.step(prop(1))
        read_messages(r)
    # Index 1 is the leader's empty entry, 2 the first proposal.
    for tt in range(2, r.prs.max_inflight):
        # An ack moves the window forward...
        r.step(msg(MsgAppResp, 2, 1, index=tt))
        read_messages(r)
        # ...so one more MsgApp fits.
        r.step(prop(1))
        ms = read_messages(r)
        assert len(ms) == 1 and ms[0].type == MsgApp
        assert pr2.is_paused()
        # Stale acks change nothing.
        for i in range(tt):
            r.step(msg(MsgAppResp, 2, 1, index=i))
            assert pr2.is_paused()


def test_msg_app_flow_control_recv_heartbeat() -> None:
    r, pr2 = _leader_with_replicating_follower()
    for _ in range(r.prs.max_inflight):
        r.step(prop(1))
        read_messages(r)
    for tt in range(1, 5):
        for _ in range(tt):
            # A heartbeat response unpauses the follower for one empty MsgApp (so a
            # follower whose inflight MsgApps were all lost can ack or reject and
            # free the window), then it is paused again.
            assert pr2.is_paused()
            r.step(msg(MsgHeartbeatResp, 2, 1))
            ms = read_messages(r)
            assert len(ms) == 1 and ms[0].type == MsgApp
            assert list(ms[0].entries) == []
        # Without heartbeats, nothing more is sent.
        for _ in range(10):
            assert pr2.is_paused()
            r.step(prop(1))
            assert read_messages(r) == []
        r.step(msg(MsgHeartbeatResp, 2, 1))
        read_messages(r)


def test_replication_recovers_after_whole_window_lost() -> None:
    # The liveness case behind the heartbeat rule: every MsgApp of a full window is
    # lost; heartbeats alone must get replication going again.
    nt = Network(*(new_rawnode(i, 10, 1, new_storage([1, 2, 3]), max_inflight_msgs=4) for i in (1, 2, 3)))
    nt.send(hup(1))
    nt.cut(1, 3)
    for i in range(8):
        nt.send(prop(1, b"p%d" % i))
    pr3 = nt[1].raft.prs.progress[3]
    assert pr3.state == ProgressState.REPLICATE and pr3.is_paused()
    nt.recover()
    for _ in range(3):
        nt.send(msg(MsgBeat, 1, 1))
    assert nt[3].raft.raft_log.committed == nt[1].raft.raft_log.committed == 9
    assert nt[3].applied_data() == [b"p%d" % i for i in range(8)]


# -- TestUncommittedEntryLimit ---------------------------------------------------------------------
def test_uncommitted_entry_limit() -> None:
    # Many entries, so that a size accounting bug would show (etcd's comment).
    max_entries = 1024
    test_data = b"testdata"
    max_size = max_entries * len(test_data)
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]), max_uncommitted_entries_size=max_size,
                 max_inflight_msgs=2 * 1024)
    r.become_candidate()
    r.become_leader()
    assert r.uncommitted_size == 0  # the empty entry costs nothing
    for id in (2, 3):
        r.prs.progress[id].become_replicate()

    for _ in range(max_entries):
        r.step(msg(MsgProp, 1, 1, entries=[Entry(data=test_data)]))
    # One more is over the limit.
    with pytest.raises(ProposalDroppedError):
        r.step(msg(MsgProp, 1, 1, entries=[Entry(data=test_data)]))
    # The lazy broadcast sends all of them in one MsgApp per follower.
    ms = read_messages(r)
    assert sorted(m.to for m in ms) == [2, 3]
    assert all(len(m.entries) == max_entries + 1 for m in ms)
    # As if they committed:
    r.reduce_uncommitted_size([Entry(data=test_data)] * max_entries)
    assert r.uncommitted_size == 0

    # A single large proposal is accepted when the tail is empty, even beyond the limit.
    big = [Entry(data=test_data) for _ in range(2 * max_entries)]
    r.step(msg(MsgProp, 1, 1, entries=big))
    with pytest.raises(ProposalDroppedError):
        r.step(msg(MsgProp, 1, 1, entries=[Entry(data=test_data)]))
    # An empty entry is always accepted (a new leader's entry, leaving a joint config).
    r.step(msg(MsgProp, 1, 1, entries=[Entry()]))
    ms = read_messages(r)
    assert sorted(m.to for m in ms) == [2, 3]
    r.reduce_uncommitted_size([Entry(data=test_data)] * (2 * max_entries))
    assert r.uncommitted_size == 0


def test_uncommitted_entry_limit_through_rawnode() -> None:
    rn = new_rawnode(1, 10, 1, new_storage([1]), max_uncommitted_entries_size=16)
    nt = Network(rn)
    nt.send(hup(1))
    rn.propose(b"x" * 10)
    rn.propose(b"y" * 6)
    with pytest.raises(ProposalDroppedError):
        rn.propose(b"z")
    # Once they commit (and the Ready hands them to be applied) there is room again.
    nt.send(*nt[1].drain())
    rn.propose(b"z")


# -- raft_test.go: progress and the leader's own acks --------------------------------------------------
def test_progress_leader() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    r.prs.progress[2].become_replicate()
    for _ in range(5):
        r.step(msg(MsgProp, 1, 1, entries=[Entry(data=b"foo")]))
    # Nothing is durable yet: the leader's own match waits for its self-ack.
    assert r.prs.progress[1].match == 0
    ents = r.raft_log.unstable.next_entries()
    assert len(ents) == 6 and ents[0].data == b"" and ents[5].data == b"foo"
    advance_messages_after_append(r)
    assert (r.prs.progress[1].match, r.prs.progress[1].next) == (6, 7)


def test_progress_resume_by_heartbeat_resp() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    pr2 = r.prs.progress[2]
    pr2.probe_sent = True
    r.step(msg(MsgBeat, 1, 1))
    assert pr2.probe_sent  # a heartbeat does not unpause a probe
    pr2.become_replicate()
    assert not pr2.probe_sent
    pr2.probe_sent = True
    r.step(msg(MsgHeartbeatResp, 2, 1))
    assert not pr2.probe_sent


def test_progress_paused() -> None:
    # A probing follower gets one MsgApp at a time (and, lazily, one per flush).
    r = new_raft(1, 5, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    for _ in range(3):
        r.step(prop(1))
    assert len(read_messages(r)) == 1


def test_progress_flow_control() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2]), max_inflight_msgs=3, max_size_per_msg=2048,
                 max_inflight_bytes=9000)  # a little over max_inflight_msgs * max_size_per_msg
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    # While 2 probes, propose a bunch of entries.
    r.prs.progress[2].become_probe()
    blob, large = b"a" * 1000, b"b" * 5000
    for i in range(22):
        r.step(prop(1, large if 10 <= i < 16 else blob))
        if i == 0:
            # etcd sends on the first proposal; our broadcast is lazy, so flush here
            # to send the probe with the same contents as etcd's.
            r.flush_bcast()
    ms = read_messages(r)
    # One MsgApp while probing: the empty entry and the first proposal.
    assert len(ms) == 1 and ms[0].type == MsgApp
    assert [len(e.data) for e in ms[0].entries] == [0, 1000]

    def ack_and_verify(index: int, *exp_entries: int) -> int:
        r.step(msg(MsgAppResp, 2, 1, index=index))
        ms = read_messages(r)
        assert [len(m.entries) for m in ms] == list(exp_entries)
        assert all(m.type == MsgApp for m in ms)
        last = ms[-1].entries
        return last[-1].index if last else index

    # Acked: now REPLICATE, several messages at once.
    index = ack_and_verify(ms[0].entries[1].index, 2, 2, 2)
    # The third message holds one large entry, not two.
    index = ack_and_verify(index, 2, 1, 1)
    # Large entries, capped at 2 messages by max_inflight_bytes.
    index = ack_and_verify(index, 1, 1)
    index = ack_and_verify(index, 1, 1)
    # Small again.
    index = ack_and_verify(index, 1, 2, 2)
    ack_and_verify(index, 2)


def test_handle_heartbeat_resp() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2], entries=entries_with_terms(1, 2, 3)))
    r.become_candidate()
    r.become_leader()
    r.raft_log.commit_to(r.raft_log.last_index())
    # A heartbeat response from a follower that is behind: re-send a MsgApp.
    r.step(msg(MsgHeartbeatResp, 2, 1))
    ms = read_messages(r)
    assert [m.type for m in ms] == [MsgApp]
    # Again.
    r.step(msg(MsgHeartbeatResp, 2, 1))
    ms = read_messages(r)
    assert [m.type for m in ms] == [MsgApp]
    # Once it acks, heartbeats no longer cause MsgApps.
    r.step(msg(MsgAppResp, 2, 1, index=ms[0].index + len(ms[0].entries)))
    read_messages(r)
    r.step(msg(MsgHeartbeatResp, 2, 1))
    assert read_messages(r) == []


def test_msg_app_resp_wait_reset() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]))
    r.become_candidate()
    r.become_leader()
    read_messages(r)  # persist the empty entry
    r.bcast_append()
    read_messages(r)
    # 2 acks the empty entry: committed.
    r.step(msg(MsgAppResp, 2, 1, index=1))
    assert r.raft_log.committed == 1
    read_messages(r)  # the MsgApps telling followers the commit index
    r.step(msg(MsgProp, 1, 1, entries=[Entry()]))
    # Only 2 left the probe wait: 3 gets nothing yet.
    ms = read_messages(r)
    assert [(m.type, m.to, [e.index for e in m.entries]) for m in ms] == [(MsgApp, 2, [2])]
    # 3 acks: its wait ends and it gets entry 2.
    r.step(msg(MsgAppResp, 3, 1, index=1))
    ms = read_messages(r)
    assert [(m.type, m.to, [e.index for e in m.entries]) for m in ms] == [(MsgApp, 3, [2])]


def test_leader_msg_app_self_ack_after_term_change() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]))
    r.become_candidate()
    r.become_leader()
    r.step(prop(1))
    held = r.msgs_after_append
    r.msgs_after_append = []
    # 1 learns that 2 leads a newer term before its own write is durable.
    r.step(msg(MsgHeartbeat, 2, 1, term=r.term + 1))
    assert r.state == F
    # Its late self-ack is of an older term: ignored.
    for m in held:
        r.step(m)
    assert r.state == F


@pytest.mark.parametrize(
    "matches,terms,sm_term,w",
    [
        # single
        ([1], [1], 1, 1), ([1], [1], 2, 0), ([2], [1, 2], 2, 2), ([1], [2], 2, 1),
        # odd
        ([2, 1, 1], [1, 2], 1, 1), ([2, 1, 1], [1, 1], 2, 0), ([2, 1, 2], [1, 2], 2, 2),
        ([2, 1, 2], [1, 1], 2, 0),
        # even
        ([2, 1, 1, 1], [1, 2], 1, 1), ([2, 1, 1, 1], [1, 1], 2, 0), ([2, 1, 1, 2], [1, 2], 1, 1),
        ([2, 1, 1, 2], [1, 1], 2, 0), ([2, 1, 2, 2], [1, 2], 2, 2), ([2, 1, 2, 2], [1, 1], 2, 0),
    ],
)
def test_commit(matches, terms, sm_term: int, w: int) -> None:
    # The commit index is the quorum's match, if that entry is of the current term.
    from raftcore.confchange import to_v2
    from raftcore.raftpb import ConfChange, ConfChangeAddNode
    r = new_raft(1, 10, 2, new_storage([1], entries=entries_with_terms(*terms), hard_state=HardState(term=sm_term)))
    for j, m in enumerate(matches):
        id = j + 1
        if id > 1:
            r.apply_conf_change(to_v2(ConfChange(type=ConfChangeAddNode, node_id=id)))
        pr = r.prs.progress[id]
        pr.match, pr.next = m, m + 1
    r.maybe_commit()
    assert r.raft_log.committed == w


# -- raft_paper_test.go: replication (§5.3) ------------------------------------------------------------
def accept_and_reply(m):
    assert m.type == MsgApp
    return msg(MsgAppResp, m.to, m.from_, term=m.term, index=m.index + len(m.entries))


def commit_noop_entry(r) -> None:
    assert r.state == L
    r.bcast_append()
    for m in read_messages(r):
        assert m.type == MsgApp and len(m.entries) == 1 and m.entries[0].data == b""
        r.step(accept_and_reply(m))
    read_messages(r)  # the MsgApps carrying the new commit index
    r.raft_log.applied_to(r.raft_log.committed)


def _leader(size: int = 3):
    r = new_raft(1, 10, 1, new_storage(list(range(1, size + 1))))
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r)
    return r


def test_leader_start_replication() -> None:
    r = _leader()
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    assert [(e.index, e.term, e.data) for e in r.raft_log.unstable.next_entries()] == [(li + 1, 1, b"some data")]
    ms = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.from_, m.to, m.term, m.type, m.index, m.log_term, m.commit,
              [(e.index, e.term, e.data) for e in m.entries]) for m in ms] == [
        (1, to, 1, MsgApp, li, 1, li, [(li + 1, 1, b"some data")]) for to in (2, 3)]


def test_leader_commit_entry() -> None:
    r = _leader()
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    for m in read_messages(r):
        r.step(accept_and_reply(m))
    assert r.raft_log.committed == li + 1
    assert [(e.index, e.data) for e in r.raft_log.next_committed_ents()] == [(li + 1, b"some data")]
    # The leader tells followers the new commit index.
    ms = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.to, m.type, m.commit) for m in ms] == [(2, MsgApp, li + 1), (3, MsgApp, li + 1)]


@pytest.mark.parametrize(
    "size,acceptors,wack",
    [(1, (), True), (3, (), False), (3, (2,), True), (3, (2, 3), True), (5, (), False),
     (5, (2,), False), (5, (2, 3), True), (5, (2, 3, 4), True), (5, (2, 3, 4, 5), True)],
)
def test_leader_acknowledge_commit(size: int, acceptors, wack: bool) -> None:
    r = _leader(size)
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    for m in read_messages(r):
        if m.to in acceptors:
            r.step(accept_and_reply(m))
    advance_messages_after_append(r)
    assert (r.raft_log.committed > li) == wack


@pytest.mark.parametrize("ents", [[], [Entry(term=2, index=1)], [Entry(term=1, index=1), Entry(term=2, index=2)],
                                  [Entry(term=1, index=1)]])
def test_leader_commit_preceding_entries(ents) -> None:
    # Committing an entry of its term commits everything before it, earlier leaders'
    # entries included (§5.3, §5.4.2).
    r = new_raft(1, 10, 1, new_storage([1, 2, 3], entries=ents, hard_state=HardState(term=2)))
    r.become_candidate()
    r.become_leader()
    r.step(prop(1, b"some data"))
    for m in read_messages(r):
        r.step(accept_and_reply(m))
    li = len(ents)
    want = [(e.index, e.term, e.data) for e in ents] + [(li + 1, 3, b""), (li + 2, 3, b"some data")]
    assert [(e.index, e.term, e.data) for e in r.raft_log.next_committed_ents()] == want


@pytest.mark.parametrize(
    "ents,commit",
    [
        ([Entry(term=1, index=1, data=b"some data")], 1),
        ([Entry(term=1, index=1, data=b"some data"), Entry(term=1, index=2, data=b"some data2")], 2),
        ([Entry(term=1, index=1, data=b"some data2"), Entry(term=1, index=2, data=b"some data")], 2),
        ([Entry(term=1, index=1, data=b"some data"), Entry(term=1, index=2, data=b"some data2")], 1),
    ],
)
def test_follower_commit_entry(ents, commit: int) -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    r.become_follower(1, 2)
    r.step(msg(MsgApp, 2, 1, term=1, entries=ents, commit=commit))
    assert r.raft_log.committed == commit
    assert list(r.raft_log.next_committed_ents()) == ents[:commit]


@pytest.mark.parametrize(
    "term,index,windex,wreject,whint,wlogterm",
    [
        (0, 0, 1, False, 0, 0),  # matches committed entries
        (1, 1, 1, False, 0, 0),
        (2, 2, 2, False, 0, 0),  # matches an uncommitted entry
        (1, 2, 2, True, 1, 1),  # mismatches an existing entry
        (3, 3, 3, True, 2, 2),  # no such entry
    ],
)
def test_follower_check_msg_app(term: int, index: int, windex: int, wreject: bool, whint: int,
                                wlogterm: int) -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2, 3], entries=[Entry(term=1, index=1), Entry(term=2, index=2)],
                                       hard_state=HardState(commit=1)))
    r.become_follower(2, 2)
    r.step(msg(MsgApp, 2, 1, term=2, log_term=term, index=index))
    ms = read_messages(r)
    assert [(m.from_, m.to, m.type, m.term, m.index, m.reject, m.reject_hint, m.log_term) for m in ms] == [
        (1, 2, MsgAppResp, 2, windex, wreject, whint, wlogterm)]


@pytest.mark.parametrize(
    "index,term,ents,wents,wunstable",
    [
        (2, 2, entries_with_terms(3, start=3), entries_with_terms(1, 2, 3), entries_with_terms(3, start=3)),
        (1, 1, entries_with_terms(3, 4, start=2), entries_with_terms(1, 3, 4), entries_with_terms(3, 4, start=2)),
        (0, 0, entries_with_terms(1), entries_with_terms(1, 2), []),
        (0, 0, entries_with_terms(3), entries_with_terms(3), entries_with_terms(3)),
    ],
)
def test_follower_append_entries(index: int, term: int, ents, wents, wunstable) -> None:
    # Conflicting entries and all that follow are deleted; new ones appended and
    # handed out for persistence (§5.3).
    r = new_raft(1, 10, 1, new_storage([1, 2, 3], entries=[Entry(term=1, index=1), Entry(term=2, index=2)]))
    r.become_follower(2, 2)
    r.step(msg(MsgApp, 2, 1, term=2, log_term=term, index=index, entries=ents))
    assert list(r.raft_log.all_entries()) == wents
    assert list(r.raft_log.unstable.next_entries()) == wunstable


@pytest.mark.parametrize("ents,wterm", [(entries_with_terms(1), 2), (entries_with_terms(1, 2), 3)])
def test_vote_request(ents, wterm: int) -> None:
    # A candidate's MsgVote carries its last log index and term (§5.4.1).
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    r.step(msg(MsgApp, 2, 1, term=wterm - 1, log_term=0, index=0, entries=ents))
    read_messages(r)
    for _ in range(1, 2 * r.election_timeout):
        r._tick_election()
    ms = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.index, m.log_term) for m in ms] == [
        (MsgVote, to, wterm, ents[-1].index, ents[-1].term) for to in (2, 3)]
