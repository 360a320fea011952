"""Membership changes, after etcd-io/raft's raft_test.go (TestStepIgnoreConfig ...
TestCommitAfterRemoveNode, the learner tests) and its joint-consensus datadriven
scenarios (testdata/confchange_v2_*.txt): single-step and joint changes (thesis §4.1,
§4.3), auto and explicit leaving, replacing the leader, learners and demotion.
"""

from __future__ import annotations

import pytest

from raftcore import ConfChangeError, ProposalDroppedError, StateType
from raftcore.confchange import Changer, to_v2
from raftcore.raft import Raft
from raftcore.raftpb import (
    ConfChange,
    ConfChangeAddLearnerNode,
    ConfChangeAddNode,
    ConfChangeRemoveNode,
    ConfChangeSingle,
    ConfChangeTransitionJointExplicit,
    ConfChangeTransitionJointImplicit,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    EntryNormal,
    Message,
    MsgAppResp,
    MsgHup,
    MsgProp,
    MsgVote,
    MsgVoteResp,
)
from raftcore.testing import Network, new_node, new_raft, new_storage, next_ents, read_messages

LEADER, FOLLOWER = StateType.LEADER, StateType.FOLLOWER


def cc(t: int, nid: int) -> ConfChangeV2:
    return to_v2(ConfChange(type=t, node_id=nid))


def add(nid: int) -> ConfChangeV2:
    return cc(ConfChangeAddNode, nid)


def single(t: int, nid: int) -> ConfChangeSingle:
    return ConfChangeSingle(type=t, node_id=nid)


def voters(r: Raft) -> list[int]:
    return sorted(r.prs.config.voters.ids())


def learners(r: Raft) -> list[int]:
    return sorted(r.prs.config.learners)


def conf(r: Raft) -> ConfState:
    return r.prs.conf_state()


# -- one Raft, configuration bookkeeping ---------------------------------------------------------
def test_step_config_sets_pending_conf_index() -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    index = r.raft_log.last_index()
    r.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry(type=EntryConfChange)]))
    assert r.raft_log.last_index() == index + 1
    assert r.pending_conf_index == index + 1


def test_step_ignore_config() -> None:
    # A second conf change proposed while the first is unapplied becomes an empty
    # normal entry at the same index, and the pending index stays the first's.
    r = new_raft(1, 10, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    r.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry(type=EntryConfChange)]))
    index = r.raft_log.last_index()
    pending = r.pending_conf_index
    r.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry(type=EntryConfChange)]))
    assert r.raft_log.entries(index + 1) == [Entry(type=EntryNormal, term=1, index=3)]
    assert r.pending_conf_index == pending


@pytest.mark.parametrize("add_entry,wpending", [(False, 0), (True, 1)])
def test_new_leader_pending_config(add_entry: bool, wpending: int) -> None:
    # A new leader conservatively treats its whole uncommitted tail as possibly
    # holding a conf change.
    r = new_raft(1, 10, 1, new_storage([1, 2]))
    if add_entry:
        assert r._append_entry([Entry(type=EntryNormal)])
    r.become_candidate()
    r.become_leader()
    assert r.pending_conf_index == wpending


def test_add_node() -> None:
    r = new_raft(1, 10, 1, new_storage([1]))
    r.apply_conf_change(add(2))
    assert voters(r) == [1, 2]


def test_add_learner() -> None:
    r = new_raft(1, 10, 1, new_storage([1]))
    r.apply_conf_change(cc(ConfChangeAddLearnerNode, 2))
    assert not r.is_learner
    assert learners(r) == [2] and r.prs.progress[2].is_learner
    # Promote the learner.
    r.apply_conf_change(add(2))
    assert not r.prs.progress[2].is_learner
    # Demote ourselves, then promote again.
    r.apply_conf_change(cc(ConfChangeAddLearnerNode, 1))
    assert r.prs.progress[1].is_learner and r.is_learner
    r.apply_conf_change(add(1))
    assert not r.prs.progress[1].is_learner and not r.is_learner


def test_add_node_check_quorum() -> None:
    # A peer added just before a quorum check counts as active once; the leader
    # steps down only after a full election timeout without hearing from it.
    r = new_raft(1, 10, 1, new_storage([1]), check_quorum=True)
    r.become_candidate()
    r.become_leader()
    for _ in range(r.election_timeout - 1):
        r.tick()
    r.apply_conf_change(add(2))
    r.tick()
    assert r.state == LEADER
    for _ in range(r.election_timeout):
        r.tick()
    assert r.state == FOLLOWER


def test_remove_node() -> None:
    r = new_raft(1, 10, 1, new_storage([1, 2]))
    r.apply_conf_change(cc(ConfChangeRemoveNode, 2))
    assert voters(r) == [1]
    with pytest.raises(ConfChangeError, match="removed all voters"):
        r.apply_conf_change(cc(ConfChangeRemoveNode, 1))
    assert voters(r) == [1]


def test_remove_learner() -> None:
    r = new_raft(1, 10, 1, new_storage([1], [2]))
    r.apply_conf_change(cc(ConfChangeRemoveNode, 2))
    assert voters(r) == [1] and learners(r) == []
    with pytest.raises(ConfChangeError, match="removed all voters"):
        r.apply_conf_change(cc(ConfChangeRemoveNode, 1))


@pytest.mark.parametrize("peers,wp", [([1], True), ([1, 2, 3], True), ([], False), ([2, 3], False)])
def test_promotable(peers: list[int], wp: bool) -> None:
    r = new_raft(1, 5, 1, new_storage(peers))
    assert r.promotable() == wp


@pytest.mark.parametrize("ids", [[1, 2, 3], [3, 2, 1]])
def test_raft_nodes(ids: list[int]) -> None:
    r = new_raft(1, 10, 1, new_storage(ids))
    assert r.prs.voter_ids() == [1, 2, 3]


@pytest.mark.parametrize("pre_vote", [False, True])
def test_campaign_while_leader(pre_vote: bool) -> None:
    r = new_raft(1, 5, 1, new_storage([1]), pre_vote=pre_vote)
    assert r.state == FOLLOWER
    r.step(Message(type=MsgHup, from_=1, to=1))
    read_messages(r)  # our own vote counts once "persisted"
    assert r.state == LEADER
    term = r.term
    r.step(Message(type=MsgHup, from_=1, to=1))
    read_messages(r)
    assert r.state == LEADER and r.term == term


def test_commit_after_remove_node() -> None:
    # Pending entries commit once a conf change lowers the quorum.
    r = new_raft(1, 5, 1, new_storage([1, 2]))
    r.become_candidate()
    r.become_leader()
    change = ConfChange(type=ConfChangeRemoveNode, node_id=2)
    r.step(Message(type=MsgProp, entries=[Entry(type=EntryConfChange, data=change.SerializeToString())]))
    assert next_ents(r) == []
    cc_index = r.raft_log.last_index()
    r.step(Message(type=MsgProp, entries=[Entry(type=EntryNormal, data=b"hello")]))
    # Node 2 acknowledges the conf change, committing it.
    r.step(Message(type=MsgAppResp, from_=2, index=cc_index))
    ents = next_ents(r)
    assert [(e.type, e.data) for e in ents] == [(EntryNormal, b""), (EntryConfChange, change.SerializeToString())]
    # Applying it makes node 1 the only voter: "hello" commits.
    r.apply_conf_change(to_v2(change))
    ents = next_ents(r)
    assert [(e.type, e.data) for e in ents] == [(EntryNormal, b"hello")]


def test_simple_change_of_two_voters_is_refused() -> None:
    # Changing two voters at once needs joint consensus (thesis §4.3); only a
    # ConfChangeV2 with the joint transition (or several changes) gets it.
    r = new_raft(1, 10, 1, new_storage([1, 2, 3]))
    with pytest.raises(ConfChangeError, match="more than one voter changed"):
        Changer(r.prs, 1).simple([single(ConfChangeAddNode, 4), single(ConfChangeAddNode, 5)])
    with pytest.raises(ConfChangeError, match="more than one voter changed"):
        Changer(r.prs, 1).simple([single(ConfChangeRemoveNode, 3), single(ConfChangeAddNode, 4)])
    # Inside a joint config, simple changes are refused by apply_conf_change, and
    # the configuration is left as it was.
    r.apply_conf_change(ConfChangeV2(transition=ConfChangeTransitionJointExplicit,
                                     changes=[single(ConfChangeAddNode, 4)]))
    before = conf(r)
    with pytest.raises(ConfChangeError, match="simple config change in joint config"):
        r.apply_conf_change(add(5))
    with pytest.raises(ConfChangeError, match="already joint"):
        r.apply_conf_change(ConfChangeV2(changes=[single(ConfChangeAddNode, 5), single(ConfChangeAddNode, 6)]))
    assert conf(r) == before
    r.apply_conf_change(ConfChangeV2())
    with pytest.raises(ConfChangeError, match="can't leave a non-joint config"):
        r.apply_conf_change(ConfChangeV2())


# -- learners ---------------------------------------------------------------------------------------
def test_learner_election_timeout() -> None:
    n2 = new_raft(2, 10, 1, new_storage([1], [2]))
    n2.become_follower(1, 0)
    n2.randomized_election_timeout = n2.election_timeout
    for _ in range(n2.election_timeout):
        n2.tick()
    assert n2.state == FOLLOWER
    assert read_messages(n2) == []


def _learner_pair() -> Network:
    n1 = new_node(1, [1], [2])
    n2 = new_node(2, [1], [2])
    n1.raft.become_follower(1, 0)
    n2.raft.become_follower(1, 0)
    return Network(n1, n2)


def test_learner_promotion() -> None:
    nt = _learner_pair()
    n1, n2 = nt[1].raft, nt[2].raft
    assert n1.state != LEADER
    n1.randomized_election_timeout = n1.election_timeout
    nt[1].tick(n1.election_timeout)
    nt.stabilize()
    assert n1.state == LEADER and n2.state == FOLLOWER
    nt.beat(1)
    # Promote 2 on both (as if the conf change entry had been applied).
    n1.apply_conf_change(add(2))
    n2.apply_conf_change(add(2))
    assert not n2.is_learner
    n2.randomized_election_timeout = n2.election_timeout
    nt[2].tick(n2.election_timeout)
    nt.stabilize()
    nt.beat(2)
    assert n1.state == FOLLOWER and n2.state == LEADER


def test_learner_can_vote() -> None:
    # A learner may have been promoted without knowing yet (etcd's comment in
    # raft.go Step), so it answers vote requests like a voter.
    n2 = new_raft(2, 10, 1, new_storage([1], [2]))
    n2.become_follower(1, 0)
    n2.step(Message(type=MsgVote, from_=1, to=2, term=2, log_term=11, index=11))
    msgs = read_messages(n2)
    assert len(msgs) == 1 and msgs[0].type == MsgVoteResp and not msgs[0].reject


def test_learner_log_replication() -> None:
    nt = _learner_pair()
    n1, n2 = nt[1].raft, nt[2].raft
    n1.randomized_election_timeout = n1.election_timeout
    nt[1].tick(n1.election_timeout)
    nt.stabilize()
    nt.beat(1)
    assert n1.state == LEADER and n2.is_learner
    nt.propose(1, b"somedata")
    assert n1.raft_log.committed == 2
    assert n2.raft_log.committed == n1.raft_log.committed
    assert n1.prs.progress[2].match == n2.raft_log.committed
    assert nt[2].applied_data() == [b"somedata"]


def test_learner_does_not_count_for_commit() -> None:
    nt = _learner_pair()
    nt.hup(1)
    nt.isolate(1)
    n1 = nt[1].raft
    # A single voter commits alone; a learner never adds to (or holds back) a quorum.
    nt.propose(1, b"x")
    assert n1.raft_log.committed == 2 and nt[2].raft.raft_log.committed < 2


# -- joint consensus through a network of RawNodes -------------------------------------------------
def _cluster_with_joiners(n_voters: int, joiners: list[int], **cfg: object) -> Network:
    """Voters 1..n_voters with node 1 elected, plus `joiners`, which know the
    initial configuration (as a joining node restored from a snapshot would) but are
    not in it yet."""
    vs = list(range(1, n_voters + 1))
    peers = [new_node(i, vs, **cfg) for i in vs] + [new_node(j, vs, **cfg) for j in joiners]
    nt = Network(*peers)
    nt.hup(1)
    assert nt[1].raft.state == LEADER
    return nt


def _propose_cc(nt: Network, pid: int, c: ConfChange | ConfChangeV2) -> None:
    nt[pid].rn.propose_conf_change(c)
    nt.stabilize()


def _tick_until_leader(nt: Network, among: list[int], max_ticks: int = 200) -> int:
    for _ in range(max_ticks):
        for n in nt.nodes():
            n.tick()
        nt.stabilize()
        lead = [i for i in among if nt[i].raft.state == LEADER]
        if lead:
            return lead[0]
    raise AssertionError(f"no leader among {among} after {max_ticks} ticks")


def test_enter_joint_auto_leave() -> None:
    nt = _cluster_with_joiners(3, [4, 5])
    _propose_cc(nt, 1, ConfChangeV2(changes=[single(ConfChangeAddNode, 4), single(ConfChangeAddNode, 5)]))
    for i in range(1, 6):
        n = nt[i]
        # Every node applied the joint config, then (auto) the leave-joint entry.
        assert [(list(c.voters), list(c.voters_outgoing), c.auto_leave) for c in n.conf_states] == [
            ([1, 2, 3, 4, 5], [1, 2, 3], True), ([1, 2, 3, 4, 5], [], False)], i
        assert n.raft.raft_log.committed == nt[1].raft.raft_log.committed
    # The leave-joint entry is an empty ConfChangeV2 proposed by the leader.
    last = nt[1].applied[-1]
    assert last.type == EntryConfChangeV2 and last.data == b""
    nt.propose(1, b"after")
    assert all(n.applied_data() == [b"after"] for n in nt.nodes())


def test_enter_joint_explicit_and_leave_explicitly() -> None:
    nt = _cluster_with_joiners(3, [4, 5])
    lead = nt[1].raft
    _propose_cc(nt, 1, ConfChangeV2(transition=ConfChangeTransitionJointExplicit,
                                    changes=[single(ConfChangeRemoveNode, 2), single(ConfChangeRemoveNode, 3),
                                             single(ConfChangeAddNode, 4), single(ConfChangeAddNode, 5)]))
    # An explicit joint config stays joint until told otherwise.
    cs = conf(lead)
    assert (list(cs.voters), list(cs.voters_outgoing), cs.auto_leave) == ([1, 4, 5], [1, 2, 3], False)
    assert lead.prs.config.voters.is_joint

    # Commits need a majority of both halves.
    committed = lead.raft_log.committed
    nt.isolate(4)
    nt.isolate(5)
    nt.propose(1, b"a")
    assert lead.raft_log.committed == committed  # the incoming half (1 4 5) lacks a majority
    nt.recover()
    nt.beat(1)
    assert lead.raft_log.committed == committed + 1
    nt.isolate(2)
    nt.isolate(3)
    nt.propose(1, b"b")
    assert lead.raft_log.committed == committed + 1  # the outgoing half (1 2 3) lacks one
    nt.recover()
    nt.beat(1)
    assert lead.raft_log.committed == committed + 2

    # A new conf change is refused while joint (it becomes an empty entry).
    nt[1].rn.propose_conf_change(add(6))
    assert lead.raft_log.entries(lead.raft_log.last_index())[0].type == EntryNormal
    nt.stabilize()
    assert lead.prs.config.voters.is_joint

    # Leave explicitly with an empty ConfChangeV2.
    _propose_cc(nt, 1, ConfChangeV2())
    cs = conf(lead)
    assert (list(cs.voters), list(cs.voters_outgoing)) == ([1, 4, 5], [])
    # Now 2 and 3 no longer matter.
    nt.isolate(2)
    nt.isolate(3)
    nt.propose(1, b"c")
    assert [n.applied_data() for n in (nt[1], nt[4], nt[5])] == [[b"a", b"b", b"c"]] * 3


def test_empty_conf_change_outside_joint_is_dropped() -> None:
    nt = _cluster_with_joiners(3, [])
    lead = nt[1].raft
    nt[1].rn.propose_conf_change(ConfChangeV2())
    assert lead.raft_log.entries(lead.raft_log.last_index())[0].type == EntryNormal
    nt.stabilize()
    assert voters(lead) == [1, 2, 3]


def test_replace_leader_via_joint_consensus() -> None:
    # Remove the leader and add 4 in one joint change, with step_down_on_removal: the
    # leader keeps leading the joint config (it is still an outgoing voter), steps down
    # once the config without it is applied, and the new config elects a leader.
    nt = _cluster_with_joiners(3, [4], step_down_on_removal=True)
    _propose_cc(nt, 1, ConfChangeV2(changes=[single(ConfChangeRemoveNode, 1), single(ConfChangeAddNode, 4)]))
    old = nt[1].raft
    for i in (2, 3, 4):
        assert voters(nt[i].raft) == [2, 3, 4] and not nt[i].raft.prs.config.voters.is_joint
    assert old.state == FOLLOWER
    assert 1 not in old.prs.progress and not old.promotable()
    # The new configuration elects among {2, 3, 4}; the old leader never campaigns.
    lead = _tick_until_leader(nt, [2, 3, 4])
    assert old.state == FOLLOWER
    nt.propose(lead, b"new-config")
    assert all(nt[i].applied_data() == [b"new-config"] for i in (2, 3, 4))


def test_removed_leader_keeps_leading_until_stopped_by_default() -> None:
    # etcd's default (StepDownOnRemoval off): a leader that applies its own removal keeps
    # leading, takes no proposals, and its heartbeats carry the commit of that very
    # change, so a follower whose append window was full still learns it (found by the
    # chaos simulation, seed 1420 of the figure-8 mix: stepping down at once left a
    # follower in the old joint config, needing the removed node's vote, forever).
    nt = _cluster_with_joiners(3, [4])
    _propose_cc(nt, 1, ConfChangeV2(changes=[single(ConfChangeRemoveNode, 1), single(ConfChangeAddNode, 4)]))
    old = nt[1].raft
    assert old.state == LEADER and 1 not in old.prs.progress
    for i in (2, 3, 4):
        assert voters(nt[i].raft) == [2, 3, 4] and nt[i].raft.lead == 1
    with pytest.raises(ProposalDroppedError, match="removed"):
        nt[1].rn.propose(b"from a removed leader")
    # The application stops it; the new configuration elects among {2, 3, 4}.
    nt.isolate(1)
    lead = _tick_until_leader(nt, [2, 3, 4])
    nt.propose(lead, b"new-config")
    assert all(nt[i].applied_data() == [b"new-config"] for i in (2, 3, 4))


def test_replace_leader_explicit_then_transfer() -> None:
    # etcd's confchange_v2_replace_leader: enter the joint config explicitly,
    # transfer leadership to the joiner while joint, then leave the joint config.
    nt = _cluster_with_joiners(3, [4])
    _propose_cc(nt, 1, ConfChangeV2(transition=ConfChangeTransitionJointExplicit,
                                    changes=[single(ConfChangeRemoveNode, 1), single(ConfChangeAddNode, 4)]))
    assert nt[1].raft.state == LEADER and nt[1].raft.prs.config.voters.is_joint
    nt[1].rn.transfer_leader(4)
    nt.stabilize()
    assert nt[4].raft.state == LEADER and nt[1].raft.state == FOLLOWER
    _propose_cc(nt, 4, ConfChangeV2())
    assert all(voters(nt[i].raft) == [2, 3, 4] for i in (1, 2, 3, 4))
    # The removed node can't campaign.
    nt[1].rn.campaign()
    nt.stabilize()
    assert nt[4].raft.state == LEADER and nt[1].raft.state == FOLLOWER


def test_one_pending_conf_change() -> None:
    nt = _cluster_with_joiners(3, [4, 5])
    lead = nt[1].raft
    rn = nt[1].rn
    rn.propose_conf_change(ConfChange(type=ConfChangeAddNode, node_id=4))
    # Still unapplied: the second one is replaced by an empty normal entry.
    rn.propose_conf_change(ConfChange(type=ConfChangeAddNode, node_id=5))
    last = lead.raft_log.last_index()
    ents = lead.raft_log.entries(last - 1)
    assert [e.type for e in ents] == [EntryConfChange, EntryNormal] and ents[1].data == b""
    nt.stabilize()
    assert voters(lead) == [1, 2, 3, 4]
    # Once applied, the next change is accepted.
    _propose_cc(nt, 1, ConfChange(type=ConfChangeAddNode, node_id=5))
    assert voters(lead) == [1, 2, 3, 4, 5]
    assert all(voters(n.raft) == [1, 2, 3, 4, 5] for n in nt.nodes())


def test_learners_next_demotion() -> None:
    # Demoting a voter in a joint config keeps it voting in the outgoing half
    # (learners_next) until the joint config is left (thesis §4.3).
    nt = _cluster_with_joiners(3, [])
    lead = nt[1].raft
    _propose_cc(nt, 1, ConfChangeV2(transition=ConfChangeTransitionJointExplicit,
                                    changes=[single(ConfChangeAddLearnerNode, 3)]))
    cs = conf(lead)
    assert (list(cs.voters), list(cs.voters_outgoing), list(cs.learners_next), list(cs.learners)) == (
        [1, 2], [1, 2, 3], [3], [])
    assert not nt[3].raft.is_learner and nt[3].raft.promotable()
    # 3 is still needed: the outgoing half (1 2 3) needs two of three.
    committed = lead.raft_log.committed
    nt.isolate(2)
    nt.isolate(3)
    nt.propose(1, b"x")
    assert lead.raft_log.committed == committed
    nt.recover()
    nt.beat(1)
    _propose_cc(nt, 1, ConfChangeV2())
    for n in nt.nodes():
        cs = conf(n.raft)
        assert (list(cs.voters), list(cs.learners), list(cs.learners_next)) == ([1, 2], [3], [])
    assert nt[3].raft.is_learner and not nt[3].raft.promotable()
    # The learner keeps replicating, but no longer counts.
    nt.isolate(3)
    nt.propose(1, b"y")
    nt.recover()
    nt.beat(1)
    assert nt[3].applied_data() == [b"x", b"y"]
    # Its progress was kept (not reset) when it turned into a learner.
    assert lead.prs.progress[3].is_learner and lead.prs.progress[3].match == lead.raft_log.last_index()


def test_propose_conf_change_without_leader_is_dropped() -> None:
    nt = _cluster_with_joiners(3, [])
    nt.isolate(1)
    n2 = new_node(2, [1, 2, 3])
    with pytest.raises(ProposalDroppedError):
        n2.rn.propose_conf_change(add(4))


def test_new_learner_joins_through_a_snapshot() -> None:
    # A node with empty storage and no configuration (a joining node) is added as a
    # learner after the leader compacted its log: it learns the log and its own
    # membership from the snapshot's ConfState, then is promoted to voter.
    vs = [1, 2, 3]
    nt = Network(*[new_node(i, vs) for i in vs], new_node(4))
    # 4 is unreachable until the leader compacted: applying the log from index 1
    # would start it from an empty configuration.
    nt.isolate(4)
    nt.hup(1)
    lead = nt[1]
    for i in range(5):
        nt.propose(1, b"p%d" % i)
    _propose_cc(nt, 1, ConfChange(type=ConfChangeAddLearnerNode, node_id=4))
    applied = lead.raft.raft_log.applied
    lead.storage.create_snapshot(applied, lead.conf_states[-1], b"state")
    lead.storage.compact(applied)
    nt.recover()
    nt.beat(1)
    n4 = nt[4]
    assert n4.storage.snapshot().metadata.index == applied
    assert n4.raft.is_learner and voters(n4.raft) == [1, 2, 3] and learners(n4.raft) == [4]
    nt.propose(1, b"after")
    assert n4.applied_data() == [b"after"]
    _propose_cc(nt, 1, ConfChange(type=ConfChangeAddNode, node_id=4))
    assert not n4.raft.is_learner and n4.raft.promotable()
    assert all(voters(n.raft) == [1, 2, 3, 4] for n in nt.nodes())
    # 4 now counts: with 2 and 3 cut off, 1 and 4 are not a majority of four.
    nt.isolate(2)
    nt.isolate(3)
    committed = lead.raft.raft_log.committed
    nt.propose(1, b"needs-three")
    assert lead.raft.raft_log.committed == committed


def test_leader_demotes_itself_through_joint_config() -> None:
    # The leader demotes itself with auto-leave: it leads the joint config (still an
    # outgoing voter, in learners_next), then, with step_down_on_removal, steps down
    # once it is a learner.
    nt = _cluster_with_joiners(3, [], step_down_on_removal=True)
    old = nt[1].raft
    _propose_cc(nt, 1, ConfChangeV2(transition=ConfChangeTransitionJointImplicit,
                                    changes=[single(ConfChangeAddLearnerNode, 1)]))
    assert [(list(c.voters), list(c.voters_outgoing), list(c.learners_next)) for c in nt[1].conf_states] == [
        ([2, 3], [1, 2, 3], [1]), ([2, 3], [], [])]
    assert old.is_learner and old.state == FOLLOWER and not old.promotable()
    lead = _tick_until_leader(nt, [2, 3])
    nt.propose(lead, b"x")
    assert nt[1].applied_data() == [b"x"]


def test_two_conf_changes_in_one_proposal() -> None:
    # In one batch, the second conf change is already "pending" behind the first.
    nt = _cluster_with_joiners(3, [4, 5])
    lead = nt[1].raft
    ents = [Entry(type=EntryConfChange, data=ConfChange(type=ConfChangeAddNode, node_id=i).SerializeToString())
            for i in (4, 5)]
    nt.send(Message(type=MsgProp, from_=1, to=1, entries=ents))
    last = lead.raft_log.last_index()
    assert [e.type for e in lead.raft_log.entries(last - 1)] == [EntryConfChange, EntryNormal]
    assert voters(lead) == [1, 2, 3, 4]
