"""Leader election scenarios, ported from etcd-io/raft's raft_test.go and
raft_paper_test.go (paper §5.2, §5.4.1; thesis §9.6 PreVote, §6.2/§4.2.3 CheckQuorum).

Nodes default to etcd's test config: pre_vote and check_quorum off unless a test
turns them on.
"""

from __future__ import annotations

import random

import pytest

from raftcore import RawNode, StateType
from raftcore.log import RaftLog
from raftcore.raftpb import (
    HardState,
    MsgApp,
    MsgBeat,
    MsgHeartbeatResp,
    MsgHeartbeat,
    MsgHup,
    MsgPreVote,
    MsgPreVoteResp,
    MsgProp,
    MsgVote,
    MsgVoteResp,
    Entry,
)
from raftcore.testing import (
    BLACK_HOLE,
    Network,
    ents_node,
    entries_with_terms,
    msg,
    new_config,
    new_raft,
    new_rawnode,
    new_storage,
    read_messages,
    voted_node,
)

F, C, P, L = StateType.FOLLOWER, StateType.CANDIDATE, StateType.PRE_CANDIDATE, StateType.LEADER


def hup(id: int):
    return msg(MsgHup, id, id)


def cq_nodes(n: int, **kw) -> list[RawNode]:
    """n RawNodes of one cluster with check_quorum on (etcd's a.checkQuorum = true)."""
    ids = list(range(1, n + 1))
    return [new_rawnode(i, 10, 1, new_storage(ids), check_quorum=True, **kw) for i in ids]


# -- TestLeaderElection / TestLeaderElectionPreVote ---------------------------------------------
@pytest.mark.parametrize("prevote", [False, True], ids=["vote", "prevote"])
def test_leader_election(prevote: bool) -> None:
    # A failed election leaves a pre-candidate at its old term (it never bumped it).
    cand_state, cand_term = (P, 0) if prevote else (C, 1)
    pv = {"pre_vote": prevote}
    cases = [
        (Network(None, None, None, pre_vote=prevote), L, 1),
        (Network(None, None, BLACK_HOLE, pre_vote=prevote), L, 1),
        (Network(None, BLACK_HOLE, BLACK_HOLE, pre_vote=prevote), cand_state, cand_term),
        (Network(None, BLACK_HOLE, BLACK_HOLE, None, pre_vote=prevote), cand_state, cand_term),
        (Network(None, BLACK_HOLE, BLACK_HOLE, None, None, pre_vote=prevote), L, 1),
        # Three logs further along than 1's, at the same term, so rejections come back
        # instead of the votes being ignored.
        (Network(None, ents_node(1, **pv), ents_node(1, **pv), ents_node(1, 1, **pv), None, pre_vote=prevote), F, 1),
    ]
    for i, (nt, state, term) in enumerate(cases):
        nt.send(hup(1))
        r = nt[1].raft
        assert r.state == state, f"#{i}"
        assert r.term == term, f"#{i}"


def test_leader_cycle() -> None:
    # Each node can campaign and become leader in turn, with and without PreVote: the
    # log-up-to-date check (§5.4.1) passes because every log is replicated.
    for prevote in (False, True):
        nt = Network(None, None, None, pre_vote=prevote)
        for campaigner in (1, 2, 3):
            nt.send(hup(campaigner))
            for id in nt.ids:
                r = nt[id].raft
                want = L if id == campaigner else F
                assert r.state == want, f"prevote={prevote} campaigner {campaigner}, node {id}"


def test_single_node_candidate_and_pre_candidate() -> None:
    for prevote in (False, True):
        nt = Network(None, pre_vote=prevote)
        nt.send(hup(1))
        assert nt[1].raft.state == L


# -- dueling candidates --------------------------------------------------------------------------
def test_dueling_candidates() -> None:
    nt = Network(None, None, None)
    nt.cut(1, 3)
    nt.send(hup(1))
    nt.send(hup(3))
    # 1 wins with votes from 1 and 2; 3 keeps its own vote and 2's rejection.
    assert nt[1].raft.state == L
    assert nt[3].raft.state == C

    nt.recover()
    # 3 campaigns again at a higher term and disrupts leader 1, but both reject it: its
    # log lacks the entry 1 appended as leader (§5.4.1).
    nt.send(hup(3))
    for id, state, term, last in ((1, F, 2, 1), (2, F, 2, 1), (3, F, 2, 0)):
        r = nt[id].raft
        assert (r.state, r.term, r.raft_log.last_index()) == (state, term, last), f"node {id}"


def test_dueling_pre_candidates() -> None:
    nt = Network(None, None, None, pre_vote=True)
    nt.cut(1, 3)
    nt.send(hup(1))
    nt.send(hup(3))
    assert nt[1].raft.state == L
    # 3's PreVote is rejected by 2: it goes back to follower without bumping its term.
    assert nt[3].raft.state == F

    nt.recover()
    # With PreVote, 3 campaigning again does not disrupt the leader (thesis §9.6).
    nt.send(hup(3))
    for id, state, term, last in ((1, L, 1, 1), (2, F, 1, 1), (3, F, 1, 0)):
        r = nt[id].raft
        assert (r.state, r.term, r.raft_log.last_index()) == (state, term, last), f"node {id}"


def test_candidate_concede() -> None:
    nt = Network(None, None, None)
    nt.isolate(1)
    nt.send(hup(1))
    nt.send(hup(3))
    nt.recover()
    nt.send(msg(MsgBeat, 3, 3))
    data = b"force follower"
    nt.send(msg(MsgProp, 3, 3, entries=[Entry(data=data)]))
    nt.send(msg(MsgBeat, 3, 3))

    a = nt[1].raft
    assert a.state == F
    assert a.term == 1
    want = [(1, 1, b""), (2, 1, data)]
    for id in nt.ids:
        assert [(e.index, e.term, e.data) for e in nt[id].raft.raft_log.all_entries()] == want, f"node {id}"
        assert nt[id].raft.raft_log.committed == 2, f"node {id}"


def test_old_messages() -> None:
    nt = Network(None, None, None)
    # Make 1 the leader at term 3.
    nt.send(hup(1))
    nt.send(hup(2))
    nt.send(hup(1))
    # An old leader's append (term 2) is ignored (§5.1).
    nt.send(msg(MsgApp, 2, 1, term=2, entries=entries_with_terms(2, start=3)))
    nt.send(msg(MsgProp, 1, 1, entries=[Entry(data=b"somedata")]))
    want = [(1, 1, b""), (2, 2, b""), (3, 3, b""), (4, 3, b"somedata")]
    for id in nt.ids:
        assert [(e.index, e.term, e.data) for e in nt[id].raft.raft_log.all_entries()] == want, f"node {id}"


def test_leader_election_overwrite_newer_logs() -> None:
    # The state after: 1 won term 1 and replicated an entry to 2 only; 3 won term 2
    # (votes of 4 and 5) and wrote an entry nobody else got. 1, 2 and 3 all hold
    # uncommitted entries; the winner of term 3 overwrites the losers' newer entry.
    for prevote in (False, True):
        pv = {"pre_vote": prevote}
        nt = Network(ents_node(1, **pv), ents_node(1, **pv), ents_node(2, **pv),
                     voted_node(3, 2, **pv), voted_node(3, 2, **pv),
                     pre_vote=prevote)
        # 1's first campaign fails (a quorum knows term 2) but pushes its term to 2.
        nt.send(hup(1))
        r1 = nt[1].raft
        assert (r1.state, r1.term) == (F, 2)
        # Its second campaign, at term 3, succeeds.
        nt.send(hup(1))
        assert (r1.state, r1.term) == (L, 3)
        for id in nt.ids:
            r = nt[id].raft
            assert [e.term for e in r.raft_log.all_entries()] == [1, 3], f"prevote={prevote} node {id}"


# -- randomized election timeouts (paper §5.2) ----------------------------------------------------
def _timeouts(state: StateType, seed: int, rounds: int, et: int = 10) -> list[int]:
    r = new_raft(1, et, 1, new_storage([1, 2, 3]), rng=random.Random(seed))
    out = []
    for _ in range(rounds):
        if state == F:
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        elapsed = 0
        while not read_messages(r):
            r.tick()
            elapsed += 1
        out.append(elapsed)
    return out


@pytest.mark.parametrize("state", [F, C], ids=["follower", "candidate"])
def test_nonleader_election_timeout_randomized(state: StateType) -> None:
    et = 10
    got = _timeouts(state, seed=7, rounds=50 * et, et=et)
    # Every timeout is in [E, 2E), and every value of that range happens.
    assert set(got) == set(range(et, 2 * et))
    # The rng is injected: the same seed gives the same timeouts.
    assert _timeouts(state, seed=7, rounds=50) == got[:50]
    assert _timeouts(state, seed=8, rounds=50) != got[:50]


@pytest.mark.parametrize("state", [F, C], ids=["follower", "candidate"])
def test_nonleaders_election_timeout_nonconflict(state: StateType) -> None:
    # Randomized timeouts make it unlikely that several nodes time out on the same
    # tick (split votes, §5.2).
    et, size, rounds = 10, 5, 500
    ids = list(range(1, size + 1))
    rs = [new_raft(i, et, 1, new_storage(ids)) for i in ids]
    conflicts = 0
    for _ in range(rounds):
        for r in rs:
            if state == F:
                r.become_follower(r.term + 1, 0)
            else:
                r.become_candidate()
        timed_out = 0
        while timed_out == 0:
            for r in rs:
                r.tick()
                if read_messages(r):
                    timed_out += 1
        if timed_out > 1:
            conflicts += 1
    assert conflicts / rounds <= 0.3


# -- votes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ents,log_term,index,wreject",
    [
        # same log term: the longer log wins
        (entries_with_terms(1), 1, 1, False),
        (entries_with_terms(1), 1, 2, False),
        (entries_with_terms(1, 1), 1, 1, True),
        # the candidate's last term is higher
        (entries_with_terms(1), 2, 1, False),
        (entries_with_terms(1), 2, 2, False),
        (entries_with_terms(1, 1), 2, 1, False),
        # the voter's last term is higher
        (entries_with_terms(2), 1, 1, True),
        (entries_with_terms(2), 1, 2, True),
        (entries_with_terms(2, 2), 1, 1, True),
        (entries_with_terms(1, 1), 1, 1, True),
    ],
)
def test_voter(ents, log_term: int, index: int, wreject: bool) -> None:
    # A voter grants only to a candidate whose log is at least as up to date (§5.4.1).
    r = new_raft(1, 10, 1, new_storage([1, 2], entries=ents))
    r.step(msg(MsgVote, 2, 1, term=3, log_term=log_term, index=index))
    ms = read_messages(r)
    assert len(ms) == 1
    assert ms[0].type == MsgVoteResp
    assert ms[0].reject == wreject


_RECV_VOTE_CASES = [
    (F, 0, 0, 0, True), (F, 0, 1, 0, True), (F, 0, 2, 0, True), (F, 0, 3, 0, False),
    (F, 1, 0, 0, True), (F, 1, 1, 0, True), (F, 1, 2, 0, True), (F, 1, 3, 0, False),
    (F, 2, 0, 0, True), (F, 2, 1, 0, True), (F, 2, 2, 0, False), (F, 2, 3, 0, False),
    (F, 3, 0, 0, True), (F, 3, 1, 0, True), (F, 3, 2, 0, False), (F, 3, 3, 0, False),
    # already voted: the same candidate again is granted, another is refused
    (F, 3, 2, 2, False),
    (F, 3, 2, 1, True),
    (L, 3, 3, 1, True),
    (P, 3, 3, 1, True),
    (C, 3, 3, 1, True),
]


@pytest.mark.parametrize("msg_type", [MsgVote, MsgPreVote], ids=["vote", "prevote"])
@pytest.mark.parametrize("state,index,log_term,vote_for,wreject", _RECV_VOTE_CASES)
def test_recv_msg_vote(msg_type: int, state: StateType, index: int, log_term: int,
                       vote_for: int, wreject: bool) -> None:
    r = new_raft(1, 10, 1, new_storage([1]))
    r.state = state
    r._step = {F: r._step_follower, C: r._step_candidate, P: r._step_candidate, L: r._step_leader}[state]
    r.vote = vote_for
    r.raft_log = RaftLog(new_storage(entries=entries_with_terms(2, 2)), r.logger)
    # Same term on both sides: only the log comparison and the existing vote decide.
    term = max(r.raft_log.last_term(), log_term)
    r.term = term
    r.step(msg(msg_type, 2, 0, term=term, index=index, log_term=log_term))
    ms = read_messages(r)
    assert len(ms) == 1
    assert ms[0].type == (MsgVoteResp if msg_type == MsgVote else MsgPreVoteResp)
    assert ms[0].reject == wreject


def test_reject_stale_term_message() -> None:
    # A message of an older term never reaches the role's step function (§5.1).
    called = []
    storage = new_storage([1, 2, 3], hard_state=HardState(term=2))
    r = new_raft(1, 10, 1, storage)
    r._step = lambda m: called.append(m)
    assert r.term == 2
    r.step(msg(MsgApp, 2, 1, term=1))
    assert called == []


# -- CheckQuorum (§6.2, thesis §4.2.3) -------------------------------------------------------------
def test_leader_stepdown_when_quorum_active() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]), check_quorum=True)
    r.become_candidate()
    r.become_leader()
    for _ in range(r.election_timeout + 1):
        r.step(msg(MsgHeartbeatResp, 2, 1, term=r.term))
        r.tick()
    assert r.state == L


def test_leader_stepdown_when_quorum_lost() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]), check_quorum=True)
    r.become_candidate()
    r.become_leader()
    for _ in range(r.election_timeout + 1):
        r.tick()
    assert r.state == F


def test_leader_superseding_with_check_quorum() -> None:
    a, b, c = cq_nodes(3)
    nt = Network(a, b, c)
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    for _ in range(b.raft.election_timeout):
        b.tick()
    nt.send(hup(1))
    assert a.raft.state == L
    assert c.raft.state == F

    nt.send(hup(3))
    # b heard from leader a within the election timeout: it ignores c's vote request
    # (the vote lease), so c cannot win.
    assert c.raft.state == C

    # Once b's lease has expired, c wins.
    for _ in range(b.raft.election_timeout):
        b.tick()
    nt.send(hup(3))
    assert c.raft.state == L


def test_leader_election_with_check_quorum() -> None:
    a, b, c = cq_nodes(3)
    nt = Network(a, b, c)
    a.raft.randomized_election_timeout = a.raft.election_timeout + 1
    b.raft.randomized_election_timeout = b.raft.election_timeout + 2
    # Right after creation nobody knows a leader: votes are cast regardless of the lease.
    nt.send(hup(1))
    assert a.raft.state == L
    assert c.raft.state == F

    a.raft.randomized_election_timeout = a.raft.election_timeout + 1
    b.raft.randomized_election_timeout = b.raft.election_timeout + 2
    for _ in range(a.raft.election_timeout):
        a.tick()
    for _ in range(b.raft.election_timeout):
        b.tick()
    nt.send(hup(3))
    assert a.raft.state == F
    assert c.raft.state == L


def test_free_stuck_candidate_with_check_quorum() -> None:
    # A candidate whose term ran ahead while partitioned can disrupt a leader that
    # still holds its lease: its answer to the leader's heartbeat carries its higher
    # term, and the leader steps down.
    a, b, c = cq_nodes(3)
    nt = Network(a, b, c)
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    for _ in range(b.raft.election_timeout):
        b.tick()
    nt.send(hup(1))

    nt.isolate(1)
    nt.send(hup(3))
    assert b.raft.state == F
    assert c.raft.state == C
    assert c.raft.term == b.raft.term + 1

    nt.send(hup(3))
    assert b.raft.state == F
    assert c.raft.state == C
    assert c.raft.term == b.raft.term + 2

    nt.recover()
    nt.send(msg(MsgHeartbeat, 1, 3, term=a.raft.term))
    assert a.raft.state == F
    assert a.raft.term == c.raft.term

    nt.send(hup(3))
    assert c.raft.state == L


def test_non_promotable_voter_with_check_quorum() -> None:
    a = new_rawnode(1, 10, 1, new_storage([1, 2]), check_quorum=True)
    b = new_rawnode(2, 10, 1, new_storage([1]), check_quorum=True)
    nt = Network(a, b)
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    assert not b.raft.promotable()
    for _ in range(b.raft.election_timeout):
        b.tick()
    nt.send(hup(1))
    assert a.raft.state == L
    assert b.raft.state == F
    assert b.raft.lead == 1


def _disruptive_setup() -> tuple[Network, RawNode, RawNode, RawNode]:
    n1, n2, n3 = cq_nodes(3)
    for n in (n1, n2, n3):
        n.raft.become_follower(1, 0)
    nt = Network(n1, n2, n3)
    nt.send(hup(1))
    assert (n1.raft.state, n2.raft.state, n3.raft.state) == (L, F, F)
    return nt, n1, n2, n3


def test_disruptive_follower() -> None:
    # A follower whose election timer fires while the leader's messages are delayed
    # becomes a candidate at a higher term; its reply to the late heartbeat makes the
    # leader step down (without PreVote nothing prevents this).
    nt, n1, n2, n3 = _disruptive_setup()
    n3.raft.randomized_election_timeout = n3.raft.election_timeout + 2
    for _ in range(n3.raft.randomized_election_timeout - 1):
        n3.tick()
    n3.tick()
    assert (n1.raft.state, n2.raft.state, n3.raft.state) == (L, F, C)
    assert (n1.raft.term, n2.raft.term, n3.raft.term) == (2, 2, 3)

    # The heartbeat was sent at the leader's (lower) term; n3's MsgAppResp at term 3
    # (and its queued vote requests, which the lease makes n1 and n2 ignore) go out.
    nt.send(msg(MsgHeartbeat, 1, 3, term=n1.raft.term))
    assert (n1.raft.state, n2.raft.state, n3.raft.state) == (F, F, C)
    assert (n1.raft.term, n2.raft.term, n3.raft.term) == (3, 2, 3)


def test_disruptive_follower_pre_vote() -> None:
    # With PreVote the isolated follower, whose log is behind, cannot disrupt the leader.
    nt, n1, n2, n3 = _disruptive_setup()
    nt.isolate(3)
    for _ in range(3):
        nt.send(msg(MsgProp, 1, 1, entries=[Entry(data=b"somedata")]))
    for n in (n1, n2, n3):
        n.raft.pre_vote = True
    nt.recover()
    nt.send(hup(3))
    assert (n1.raft.state, n2.raft.state, n3.raft.state) == (L, F, P)
    assert (n1.raft.term, n2.raft.term, n3.raft.term) == (2, 2, 2)

    # A delayed heartbeat does not make the leader step down.
    nt.send(msg(MsgHeartbeat, 1, 3, term=n1.raft.term))
    assert n1.raft.state == L


def test_pre_vote_with_check_quorum() -> None:
    n1, n2, n3 = cq_nodes(3, pre_vote=True)
    for n in (n1, n2, n3):
        n.raft.become_follower(1, 0)
    nt = Network(n1, n2, n3)
    nt.send(hup(1))
    # Isolate the leader: 2 and 3 still know it.
    nt.isolate(1)
    assert (n1.raft.state, n2.raft.state, n3.raft.state) == (L, F, F)
    # 2 ignores 3's PreVote (lease), but then 3 grants 2's: a new leader emerges.
    nt.send(hup(3))
    nt.send(hup(2))
    assert n2.raft.state == L or n3.raft.state == F
    assert n2.raft.state == L


def test_pre_vote_with_split_vote() -> None:
    n1, n2, n3 = (new_rawnode(i, 10, 1, new_storage([1, 2, 3]), pre_vote=True) for i in (1, 2, 3))
    for n in (n1, n2, n3):
        n.raft.become_follower(1, 0)
    nt = Network(n1, n2, n3)
    nt.send(hup(1))
    # Simulate leader down; 2 and 3 time out together and split the vote.
    nt.isolate(1)
    nt.send(hup(2), hup(3))
    assert (n2.raft.term, n3.raft.term) == (3, 3)
    assert (n2.raft.state, n3.raft.state) == (C, C)
    # Node 2 campaigns again and wins.
    nt.send(hup(2))
    assert (n2.raft.term, n3.raft.term) == (4, 4)
    assert (n2.raft.state, n3.raft.state) == (L, F)


def test_campaign_config_from_rawnode_defaults() -> None:
    # The library's defaults (unlike etcd's test config) turn PreVote and CheckQuorum
    # on; a fresh 3-node cluster still elects a leader through PreVote.
    ids = [1, 2, 3]
    nodes = [RawNode(new_config(i, new_storage(ids), pre_vote=True, check_quorum=True)) for i in ids]
    nt = Network(*nodes)
    nt.send(hup(2))
    assert nt[2].raft.state == L
    assert [nt[i].raft.term for i in ids] == [1, 1, 1]


# -- raft_paper_test.go: elections (§5.1, §5.2) ----------------------------------------------------
def _in_state(state: StateType, peers=(1, 2, 3)):
    r = new_raft(1, 10, 1, new_storage(list(peers)))
    if state == F:
        r.become_follower(1, 2)
    elif state == P:
        r.become_pre_candidate()
    elif state == C:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()
    return r


@pytest.mark.parametrize("state", [F, C, L], ids=["follower", "candidate", "leader"])
def test_update_term_from_message(state: StateType) -> None:
    # A server that sees a larger term adopts it; a candidate or leader reverts to
    # follower (§5.1).
    r = _in_state(state)
    r.step(msg(MsgApp, term=2))
    assert (r.term, r.state) == (2, F)


def test_start_as_follower() -> None:
    assert new_raft(1, 10, 1, new_storage([1, 2, 3])).state == F


def test_leader_bcast_beat() -> None:
    r = _in_state(L)
    for i in range(10):
        r._append_entry([Entry(index=i + 1)])
    r.tick()  # heartbeat interval 1
    ms = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.from_, m.to, m.term, m.type, m.commit, m.index, m.log_term, len(m.entries)) for m in ms] == [
        (1, 2, 1, MsgHeartbeat, 0, 0, 0, 0),
        (1, 3, 1, MsgHeartbeat, 0, 0, 0, 0),
    ]


@pytest.mark.parametrize("state", [F, C], ids=["follower", "candidate"])
def test_nonleader_start_election(state: StateType) -> None:
    # No word from a leader within the election timeout: campaign at term+1, vote for
    # ourselves and ask every other server in parallel (§5.2).
    et = 10
    r = new_raft(1, et, 1, new_storage([1, 2, 3]))
    if state == F:
        r.become_follower(1, 2)
    else:
        r.become_candidate()
    for _ in range(1, 2 * et):
        r.tick()
    ms = sorted(read_messages(r), key=lambda m: m.to)
    assert (r.term, r.state) == (2, C)
    assert r.prs.votes.get(1) is True
    assert [(m.from_, m.to, m.term, m.type, m.index, m.log_term) for m in ms] == [
        (1, 2, 2, MsgVote, 0, 0), (1, 3, 2, MsgVote, 0, 0)]


@pytest.mark.parametrize(
    "size,votes,state",
    [
        # a majority grants: win
        (1, {}, L), (3, {2: True, 3: True}, L), (3, {2: True}, L),
        (5, {2: True, 3: True, 4: True, 5: True}, L), (5, {2: True, 3: True, 4: True}, L),
        (5, {2: True, 3: True}, L),
        # a majority rejects: back to follower
        (3, {2: False, 3: False}, F), (5, {2: False, 3: False, 4: False, 5: False}, F),
        (5, {2: True, 3: False, 4: False, 5: False}, F),
        # undecided: stay candidate
        (3, {}, C), (5, {2: True}, C), (5, {2: False, 3: False}, C), (5, {}, C),
    ],
)
def test_leader_election_in_one_round_rpc(size: int, votes: dict, state: StateType) -> None:
    r = new_raft(1, 10, 1, new_storage(list(range(1, size + 1))))
    r.step(hup(1))
    read_messages(r)  # persist; the self-vote counts
    for id, granted in votes.items():
        r.step(msg(MsgVoteResp, id, 1, term=r.term, reject=not granted))
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize("vote,nvote,wreject", [(0, 2, False), (0, 3, False), (2, 2, False),
                                                (3, 3, False), (2, 3, True), (3, 2, True)])
def test_follower_vote(vote: int, nvote: int, wreject: bool) -> None:
    # At most one vote per term, first come first served (§5.2).
    r = new_raft(1, 10, 1, new_storage([1, 2, 3], hard_state=HardState(term=1, vote=vote)))
    r.step(msg(MsgVote, nvote, 1, term=1))
    # The answer waits for the vote to be persisted.
    assert r.msgs == []
    assert [(m.from_, m.to, m.term, m.type, m.reject) for m in r.msgs_after_append] == [
        (1, nvote, 1, MsgVoteResp, wreject)]


@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term: int) -> None:
    # A candidate that hears from a leader of at least its term steps down (§5.2).
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    r.step(hup(1))
    assert r.state == C
    r.step(msg(MsgApp, 2, 1, term=term))
    assert (r.state, r.term) == (F, term)


# -- raft_test.go: transitions and held self-votes ----------------------------------------------------
@pytest.mark.parametrize(
    "frm,to,wallow,wterm,wlead",
    [
        (F, F, True, 1, 0), (F, P, True, 0, 0), (F, C, True, 1, 0), (F, L, False, 0, 0),
        (P, F, True, 0, 0), (P, P, True, 0, 0), (P, C, True, 1, 0), (P, L, True, 0, 1),
        (C, F, True, 0, 0), (C, P, True, 0, 0), (C, C, True, 1, 0), (C, L, True, 0, 1),
        (L, F, True, 1, 0), (L, P, False, 0, 0), (L, C, False, 1, 0), (L, L, True, 0, 1),
    ],
)
def test_state_transition(frm, to, wallow: bool, wterm: int, wlead: int) -> None:
    r = new_raft(1, 10, 1, new_storage([1]))
    r.state = frm
    become = {F: lambda: r.become_follower(wterm, wlead), P: r.become_pre_candidate,
              C: r.become_candidate, L: r.become_leader}[to]
    if not wallow:
        with pytest.raises(AssertionError):
            become()
        return
    become()
    assert (r.term, r.lead) == (wterm, wlead)


@pytest.mark.parametrize("state,windex", [(F, 0), (P, 0), (C, 0), (L, 1)])
def test_all_server_stepdown(state: StateType, windex: int) -> None:
    for mt in (MsgVote, MsgApp):
        r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
        if state == F:
            r.become_follower(1, 0)
        elif state == P:
            r.become_pre_candidate()
        elif state == C:
            r.become_candidate()
        else:
            r.become_candidate()
            r.become_leader()
        r.step(msg(mt, 2, 1, term=3, log_term=3))
        assert (r.state, r.term, r.raft_log.last_index()) == (F, 3, windex)
        assert len(r.raft_log.all_entries()) == windex
        assert r.lead == (0 if mt == MsgVote else 2)


@pytest.mark.parametrize("mt", [MsgHeartbeat, MsgApp], ids=["heartbeat", "app"])
def test_candidate_reset_term(mt: int) -> None:
    nt = Network(None, None, None)
    a, b, c = nt[1], nt[2], nt[3]
    nt.send(hup(1))
    assert (a.raft.state, b.raft.state, c.raft.state) == (L, F, F)
    # Isolate 3 and raise the term of the others.
    nt.isolate(3)
    nt.send(hup(2))
    nt.send(hup(1))
    assert (a.raft.state, b.raft.state) == (L, F)
    # 3 times out and campaigns alone.
    c.raft._reset_randomized_election_timeout()
    for _ in range(c.raft.randomized_election_timeout):
        c.tick()
    assert c.raft.state == C
    nt.recover()
    # The leader's message makes the candidate a follower at the leader's term.
    nt.send(msg(mt, 1, 3, term=a.raft.term))
    assert c.raft.state == F
    assert c.raft.term == a.raft.term


@pytest.mark.parametrize("prevote", [False, True], ids=["vote", "prevote"])
def test_candidate_self_vote_after_lost_election(prevote: bool) -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]), pre_vote=prevote)
    r.step(hup(1))
    held = r.msgs_after_append
    r.msgs_after_append = []
    # Before its self-vote is durable, it learns that 2 won.
    r.step(msg(MsgHeartbeat, 2, 1, term=r.term))
    assert r.state == F
    # The self-vote, delivered late, changes nothing.
    for m in held:
        if m.to == 1:
            r.step(m)
    assert r.state == F
    assert r.prs.tally_votes()[0] == 0


def test_candidate_delivers_pre_candidate_self_vote_after_becoming_candidate() -> None:
    r = new_raft(1, 5, 1, new_storage([1, 2, 3]), pre_vote=True)
    r.step(hup(1))
    assert r.state == P
    held = r.msgs_after_append
    r.msgs_after_append = []
    # Both peers grant the pre-vote (at term + 1) before our own is durable.
    r.step(msg(MsgPreVoteResp, 2, 1, term=r.term + 1))
    r.step(msg(MsgPreVoteResp, 3, 1, term=r.term + 1))
    assert r.state == C
    # The late pre-candidate self-vote is not a vote for the candidacy.
    for m in held:
        r.step(m)
    assert r.state == C
    held = [m for m in r.msgs_after_append if m.to == 1]
    r.msgs_after_append = []
    assert r.prs.tally_votes()[0] == 0
    # One peer's vote is not a quorum; with our own (now durable) vote it is.
    r.step(msg(MsgVoteResp, 2, 1, term=r.term))
    assert r.state == C
    for m in held:
        r.step(m)
    assert r.state == L


@pytest.mark.parametrize("vt", [MsgVote, MsgPreVote], ids=["vote", "prevote"])
@pytest.mark.parametrize("st", [F, P, C, L], ids=["follower", "pre-candidate", "candidate", "leader"])
def test_vote_from_any_state(vt: int, st: StateType) -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    r.term = 1
    if st == F:
        r.become_follower(r.term, 3)
    elif st == P:
        r.become_pre_candidate()
    elif st == C:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()
    orig_term, new_term = r.term, r.term + 1
    r.step(msg(vt, 2, 1, term=new_term, log_term=new_term, index=42))
    ms = read_messages(r)
    assert [(m.type, m.reject) for m in ms] == [(MsgVoteResp if vt == MsgVote else MsgPreVoteResp, False)]
    if vt == MsgVote:
        assert (r.state, r.term, r.vote) == (F, new_term, 2)
    else:
        # A pre-vote changes nothing.
        assert (r.state, r.term) == (st, orig_term)
        assert r.vote in (0, 1)


# -- ForgetLeader (etcd-io/raft v3.6, testdata/forget_leader*.txt) -----------------------------


def test_forget_leader_ends_the_vote_lease_so_the_others_elect_at_once() -> None:
    a, b, c = cq_nodes(3, pre_vote=True)
    nt = Network(a, b, c)
    nt.send(hup(1))
    assert a.raft.state == L and b.raft.lead == 1 and c.raft.lead == 1
    # c campaigns while b still follows a: b's vote lease refuses it.
    nt.send(hup(3))
    assert c.raft.state == P and a.raft.state == L and b.raft.lead == 1
    # Told that a is gone (its connection refused), b forgets it (c, a pre-candidate,
    # has no leader to forget): c wins at once, well within an election timeout of b
    # hearing from a.
    nt.isolate(1)
    b.forget_leader()
    c.forget_leader()
    assert b.raft.lead == 0 and b.raft.term == 1 and b.raft.state == F  # same term, no vote cast
    nt.send(hup(3))
    assert c.raft.state == L and c.raft.term == 2 and b.raft.lead == 3


def test_forget_leader_is_undone_by_the_leaders_next_message() -> None:
    a, b, c = cq_nodes(3, pre_vote=True)
    nt = Network(a, b, c)
    nt.send(hup(1))
    b.forget_leader()
    assert b.raft.lead == 0
    nt.send(msg(MsgBeat, 1, 1))
    assert b.raft.lead == 1 and b.raft.state == F


def test_forget_leader_is_a_noop_on_the_leader_and_refused_with_lease_based_reads() -> None:
    from raftcore import ReadOnlyOption

    a, b, c = cq_nodes(3, pre_vote=True)
    nt = Network(a, b, c)
    nt.send(hup(1))
    a.forget_leader()
    assert a.raft.state == L and a.raft.lead == 1
    a2, b2, c2 = cq_nodes(3, pre_vote=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    nt2 = Network(a2, b2, c2)
    nt2.send(hup(1))
    b2.forget_leader()
    assert b2.raft.lead == 1  # lease-based reads rest on the vote lease: refused
