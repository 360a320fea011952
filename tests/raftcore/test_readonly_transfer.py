"""ReadIndex (thesis §6.4) and leader transfer (thesis §3.10), after etcd-io/raft's
raft_test.go: TestReadOnlyOption{Safe,Lease}, TestReadOnlyForNewLeader,
TestReadOnlyWithLearner, TestReadOnlyDuplicateRequest and the TestLeaderTransfer*
family, run on a network of RawNodes (raftcore.testing.Network).
"""

from __future__ import annotations

import pytest

from raftcore import ProposalDroppedError, ReadOnlyOption, StateType
from raftcore.confchange import to_v2
from raftcore.raft import Raft
from raftcore.raftpb import (
    ConfChange,
    ConfChangeAddLearnerNode,
    ConfChangeRemoveNode,
    ConfChangeSingle,
    ConfChangeV2,
    Entry,
    HardState,
    Message,
    MsgApp,
    MsgAppResp,
    MsgHeartbeatResp,
    MsgHup,
    MsgProp,
    MsgReadIndex,
    MsgTimeoutNow,
    MsgTransferLeader,
)
from raftcore.testing import Network, new_node, new_storage

LEADER, FOLLOWER = StateType.LEADER, StateType.FOLLOWER


def read_index_msg(pid: int, ctx: bytes, to: int | None = None) -> Message:
    return Message(type=MsgReadIndex, from_=pid, to=pid if to is None else to, entries=[Entry(data=ctx)])


def transfer(nt: Network, frm: int, to: int) -> None:
    """etcd's Message{From: transferee, To: node, Type: MsgTransferLeader}."""
    nt.send(Message(type=MsgTransferLeader, from_=frm, to=to))


def check_transfer_state(r: Raft, state: StateType, lead: int) -> None:
    assert r.state == state
    assert r.lead == lead
    assert r.lead_transferee == 0


# -- ReadIndex -------------------------------------------------------------------------------------
def _read_cases(nt: Network, cases: list[tuple[int, int, int, bytes]]) -> None:
    for i, (pid, proposals, wri, wctx) in enumerate(cases):
        for _ in range(proposals):
            nt.propose(1)
        nt.send(read_index_msg(pid, wctx))
        rs = nt[pid].read_states
        assert rs, f"#{i}: no read state on {pid}"
        assert (rs[0].index, rs[0].request_ctx) == (wri, wctx), f"#{i}"
        rs.clear()


_THREE_NODE_CASES = [(1, 10, 11, b"ctx1"), (2, 10, 21, b"ctx2"), (3, 10, 31, b"ctx3"),
                     (1, 10, 41, b"ctx4"), (2, 10, 51, b"ctx5"), (3, 10, 61, b"ctx6")]


def test_read_only_option_safe() -> None:
    # Reads on followers are forwarded to the leader, which confirms its leadership
    # with a heartbeat round before answering with its commit index.
    nt = Network(None, None, None)
    b = nt[2]
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    b.tick(b.raft.election_timeout)
    nt.hup(1)
    assert nt[1].raft.state == LEADER
    _read_cases(nt, _THREE_NODE_CASES)


def test_read_only_option_lease() -> None:
    nt = Network(None, None, None, read_only_option=ReadOnlyOption.LEASE_BASED, check_quorum=True)
    b = nt[2]
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    b.tick(b.raft.election_timeout)
    nt.hup(1)
    assert nt[1].raft.state == LEADER
    _read_cases(nt, _THREE_NODE_CASES)


def test_read_only_lease_answers_without_heartbeats() -> None:
    nt = Network(None, None, None, read_only_option=ReadOnlyOption.LEASE_BASED, check_quorum=True)
    nt.hup(1)
    nt.propose(1, b"x")
    nt.isolate(1)
    # Under the lease the leader answers from its commit index with no round trip.
    nt.send(read_index_msg(1, b"lease"))
    assert [(r.index, r.request_ctx) for r in nt[1].read_states] == [(2, b"lease")]


def test_read_only_safe_needs_a_quorum() -> None:
    nt = Network(None, None, None)
    nt.hup(1)
    nt.isolate(1)
    nt.send(read_index_msg(1, b"ctx"))
    assert nt[1].read_states == []
    nt.recover()
    nt.beat(1)  # the pending request's context rides on the next heartbeats
    assert [(r.index, r.request_ctx) for r in nt[1].read_states] == [(1, b"ctx")]


def test_read_only_with_learner() -> None:
    a = new_node(1, [1], [2])
    b = new_node(2, [1], [2])
    nt = Network(a, b)
    b.raft.randomized_election_timeout = b.raft.election_timeout + 1
    b.tick(b.raft.election_timeout)
    nt.hup(1)
    assert a.raft.state == LEADER
    _read_cases(nt, [(1, 10, 11, b"ctx1"), (2, 10, 21, b"ctx2"), (1, 10, 31, b"ctx3"), (2, 10, 41, b"ctx4")])


def test_read_only_for_new_leader() -> None:
    # A new leader answers reads only once it committed an entry of its own term:
    # until then its commit index may lag the previous leader's (thesis §6.4).
    peers = []
    for pid, committed, applied, compact in ((1, 1, 1, 0), (2, 2, 2, 2), (3, 2, 2, 2)):
        s = new_storage([1, 2, 3])
        s.append([Entry(term=1, index=1), Entry(term=1, index=2)])
        s.set_hard_state(HardState(term=1, commit=committed))
        if compact:
            s.compact(compact)
        peers.append(new_node(pid, storage=s, applied=applied))
    nt = Network(*peers)
    # Keep the leader from committing an entry of its term.
    nt.ignore(MsgApp)
    nt.hup(1)
    sm = nt[1].raft
    assert sm.state == LEADER
    nt.send(read_index_msg(1, b"ctx"))
    assert nt[1].read_states == []
    nt.recover()
    for _ in range(sm.heartbeat_timeout):
        nt[1].tick()
    nt.propose(1)
    assert sm.raft_log.committed == 4
    assert sm.raft_log.term(sm.raft_log.committed) == sm.term
    # The postponed request was answered once the entry committed...
    rs = nt[1].read_states
    assert [(r.index, r.request_ctx) for r in rs] == [(4, b"ctx")]
    # ...and new requests are answered directly.
    nt.send(read_index_msg(1, b"ctx"))
    assert [(r.index, r.request_ctx) for r in rs] == [(4, b"ctx"), (4, b"ctx")]


def test_read_index_through_rawnode_on_follower() -> None:
    nt = Network(None, None, None)
    nt.hup(1)
    nt.propose(1, b"x")
    nt[3].rn.read_index(b"f")
    nt.stabilize()
    assert [(r.index, r.request_ctx) for r in nt[3].read_states] == [(2, b"f")]
    assert nt[1].read_states == []


def test_read_index_without_leader_is_dropped() -> None:
    nt = Network(None, None, None)
    nt[2].rn.read_index(b"nobody")
    nt.stabilize()
    assert all(n.read_states == [] for n in nt.nodes())


def test_read_only_duplicate_request() -> None:
    # Retried or duplicated ReadIndex requests must never yield a read index below
    # the commit index at the time the request was made.
    nt = Network(None, None, None)
    r1, r2 = nt[1].raft, nt[2].raft
    nt.hup(1)
    delayed: list[Message] = []

    def delay_heartbeat_resps(m: Message) -> bool:
        if m.type == MsgHeartbeatResp:
            delayed.append(m)
            return False
        return True

    msg_a = read_index_msg(2, b"A", to=1)
    min_a = r1.raft_log.committed
    # Duplicate A for later, as a retrying client or the network would.
    dup = Message()
    dup.CopyFrom(msg_a)
    delayed.append(dup)
    nt.msg_hook = delay_heartbeat_resps
    nt.send(msg_a)
    nt.msg_hook = None
    nt[1].tick()
    nt.stabilize()
    nt.isolate(1)
    nt.hup(2)
    nt.propose(2, b"someOp")
    min_b = r2.raft_log.committed
    nt.send(read_index_msg(1, b"B"))
    nt.recover()
    # First the duplicate of A, then the delayed acks of A's heartbeats: they must
    # not confirm B on the stale leader.
    nt.send(*delayed)
    assert all(rs.request_ctx != b"B" for rs in nt[1].read_states)
    for n in nt.nodes():
        for rs in n.read_states:
            if rs.request_ctx == b"A":
                assert rs.index >= min_a
            elif rs.request_ctx == b"B":
                assert rs.index >= min_b


# -- leader transfer -----------------------------------------------------------------------------
def _three() -> Network:
    nt = Network(None, None, None)
    nt.hup(1)
    assert nt[1].raft.lead == 1
    return nt


def test_leader_transfer_to_up_to_date_node() -> None:
    nt = _three()
    lead = nt[1].raft
    transfer(nt, 2, 1)
    check_transfer_state(lead, FOLLOWER, 2)
    # After some replication, transfer back to 1.
    nt.propose(1)
    transfer(nt, 1, 2)
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_to_up_to_date_node_from_follower() -> None:
    # Requests sent to a follower are forwarded to the leader.
    nt = _three()
    lead = nt[1].raft
    transfer(nt, 2, 2)
    check_transfer_state(lead, FOLLOWER, 2)
    nt.propose(1)
    transfer(nt, 1, 1)
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_through_rawnode() -> None:
    nt = _three()
    nt[3].rn.transfer_leader(3)  # asked on the follower itself
    nt.stabilize()
    check_transfer_state(nt[1].raft, FOLLOWER, 3)
    assert nt[3].raft.state == LEADER


def test_leader_transfer_with_check_quorum() -> None:
    # The transferee's MsgVote carries the transfer context, which lets it through
    # the voters' leader lease.
    nt = Network(None, None, None, check_quorum=True)
    for i in (1, 2, 3):
        r = nt[i].raft
        r.randomized_election_timeout = r.election_timeout + i
    f = nt[2]
    f.tick(f.raft.election_timeout)
    nt.hup(1)
    lead = nt[1].raft
    assert lead.state == LEADER
    transfer(nt, 2, 1)
    check_transfer_state(lead, FOLLOWER, 2)
    nt.propose(1)
    transfer(nt, 1, 2)
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_to_slow_follower() -> None:
    nt = _three()
    nt.isolate(3)
    nt.propose(1)
    nt.recover()
    lead = nt[1].raft
    assert lead.prs.progress[3].match == 1
    # The leader first brings 3 up to date, then sends MsgTimeoutNow.
    transfer(nt, 3, 1)
    check_transfer_state(lead, FOLLOWER, 3)


def test_leader_transfer_after_snapshot() -> None:
    nt = _three()
    nt.isolate(3)
    nt.propose(1)
    lead = nt[1].raft
    applied = lead.raft_log.applied
    nt[1].storage.create_snapshot(applied, lead.prs.conf_state(), b"")
    nt[1].storage.compact(applied)
    nt.recover()
    assert lead.prs.progress[3].match == 1

    filtered: list[Message] = []

    def hook(m: Message) -> bool:
        # Hold 3's ack of the snapshot.
        if m.type != MsgAppResp or m.from_ != 3 or m.reject:
            return True
        filtered.append(m)
        return False

    nt.msg_hook = hook
    transfer(nt, 3, 1)
    assert lead.state == LEADER and lead.lead_transferee == 3
    assert filtered
    nt.msg_hook = None
    nt.send(*filtered)
    check_transfer_state(lead, FOLLOWER, 3)


def test_leader_transfer_to_self() -> None:
    nt = _three()
    transfer(nt, 1, 1)
    check_transfer_state(nt[1].raft, LEADER, 1)


def test_leader_transfer_to_non_existing_node() -> None:
    nt = _three()
    transfer(nt, 4, 1)
    check_transfer_state(nt[1].raft, LEADER, 1)


def test_leader_transfer_timeout() -> None:
    # A transfer that does not finish within an election timeout is aborted.
    nt = _three()
    nt.isolate(3)
    lead_node = nt[1]
    lead = lead_node.raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    lead_node.tick(lead.heartbeat_timeout)
    assert lead.lead_transferee == 3
    lead_node.tick(lead.election_timeout - lead.heartbeat_timeout)
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_ignore_proposal() -> None:
    nt = _three()
    nt.isolate(3)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    nt.propose(1)
    assert [m.type for m in nt.dropped_proposals] == [MsgProp]
    with pytest.raises(ProposalDroppedError):
        nt[1].rn.propose(b"")
    with pytest.raises(ProposalDroppedError):
        lead.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry()]))
    assert lead.prs.progress[1].match == 1


def test_leader_transfer_receive_higher_term_vote() -> None:
    nt = _three()
    nt.isolate(3)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    nt.send(Message(type=MsgHup, from_=2, to=2, index=1, term=2))
    check_transfer_state(lead, FOLLOWER, 2)


def test_leader_transfer_remove_node() -> None:
    nt = _three()
    nt.ignore(MsgTimeoutNow)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    lead.apply_conf_change(to_v2(ConfChange(type=ConfChangeRemoveNode, node_id=3)))
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_demote_node() -> None:
    nt = _three()
    nt.ignore(MsgTimeoutNow)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    lead.apply_conf_change(ConfChangeV2(changes=[
        ConfChangeSingle(type=ConfChangeRemoveNode, node_id=3),
        ConfChangeSingle(type=ConfChangeAddLearnerNode, node_id=3)]))
    # Still an outgoing voter while joint: leaving the joint config aborts it.
    lead.apply_conf_change(ConfChangeV2())
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_back() -> None:
    nt = _three()
    nt.isolate(3)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    transfer(nt, 1, 1)
    check_transfer_state(lead, LEADER, 1)


def test_leader_transfer_second_transfer_to_another_node() -> None:
    nt = _three()
    nt.isolate(3)
    lead = nt[1].raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    transfer(nt, 2, 1)
    check_transfer_state(lead, FOLLOWER, 2)


def test_leader_transfer_second_transfer_to_same_node() -> None:
    # Repeating the request must not extend the transfer's deadline.
    nt = _three()
    nt.isolate(3)
    lead_node = nt[1]
    lead = lead_node.raft
    transfer(nt, 3, 1)
    assert lead.lead_transferee == 3
    lead_node.tick(lead.heartbeat_timeout)
    transfer(nt, 3, 1)
    lead_node.tick(lead.election_timeout - lead.heartbeat_timeout)
    check_transfer_state(lead, LEADER, 1)


def test_transfer_to_learner_is_ignored() -> None:
    a = new_node(1, [1], [2])
    b = new_node(2, [1], [2])
    nt = Network(a, b)
    nt.hup(1)
    transfer(nt, 2, 1)
    check_transfer_state(a.raft, LEADER, 1)


def test_read_only_same_context_twice_is_answered_twice() -> None:
    # Requests are tracked by position, not context: a retry with the same context
    # gets its own answer, at the commit index of its own arrival.
    nt = Network(None, None, None)
    nt.hup(1)
    nt.isolate(1)
    nt.send(read_index_msg(1, b"same"))
    nt.recover()
    nt.propose(1, b"x")
    nt.send(read_index_msg(1, b"same"))
    assert [(r.index, r.request_ctx) for r in nt[1].read_states] == [(1, b"same"), (2, b"same")]


def test_local_read_index_only_for_a_singleton_leader_with_a_commit_in_its_term():
    """RawNode.local_read_index: the commit index for the only voter once it leads and has
    committed an entry of its term; None for a follower, a fresh leader of a larger
    group, or a two-voter config (where a round is needed)."""
    from raftcore.config import Config
    from raftcore.raftpb import ConfChange, EntryConfChange
    from raftcore.rawnode import RawNode
    from raftcore.storage import MemoryStorage

    def node(nid: int, peers: list[int]) -> RawNode:
        rn = RawNode(Config(id=nid, election_tick=10, heartbeat_tick=1, storage=MemoryStorage(),
                            max_size_per_msg=1 << 20, max_inflight_msgs=256))
        rn.bootstrap(peers)
        return rn

    def drain(rn: RawNode) -> None:
        while rn.has_ready():
            rd = rn.ready()
            rn.raft.raft_log.storage.append(rd.entries)
            for e in rd.committed_entries:
                if e.type == EntryConfChange:
                    rn.apply_conf_change(ConfChange.FromString(e.data))
            rn.advance(rd)

    solo = node(1, [1])
    drain(solo)
    assert solo.local_read_index() is None  # a follower
    solo.campaign()
    drain(solo)
    assert solo.raft.state == StateType.LEADER
    assert solo.local_read_index() == solo.raft.raft_log.committed > 0

    pair = node(1, [1, 2])
    drain(pair)
    pair.campaign()
    drain(pair)
    assert pair.raft.state != StateType.LEADER
    assert pair.local_read_index() is None
    pair.raft.become_candidate()
    pair.raft.become_leader()  # even leading, two voters always need a round
    drain(pair)
    assert pair.local_read_index() is None
