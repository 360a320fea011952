"""Snapshots and log compaction, after etcd-io/raft's raft_snap_test.go and the
snapshot tests of raft_test.go (TestRestore..., TestProvideSnap, TestSlowNodeRestore,
TestLearnerReceiveSnapshot, TestRecvMsgUnreachable): the leader sends a snapshot to a
follower whose next entries were compacted, pauses it in SNAPSHOT state until the
snapshot is reported or acknowledged, and the follower restores its configuration
from the snapshot's ConfState.
"""

from __future__ import annotations

import pytest

from raftcore import MemoryStorage, RawNode, Ready, SnapshotStatus, StateType
from raftcore.raft import Raft
from raftcore.raftpb import (
    ConfChange,
    ConfChangeAddLearnerNode,
    ConfState,
    Entry,
    EntryConfChange,
    Message,
    MsgApp,
    MsgAppResp,
    MsgProp,
    MsgSnap,
    MsgSnapStatus,
    MsgUnreachable,
    Snapshot,
    SnapshotMetadata,
)
from raftcore.testing import Network, new_node, new_raft, new_rawnode, new_storage, read_messages
from raftcore.tracker import ProgressState

LEADER, FOLLOWER = StateType.LEADER, StateType.FOLLOWER


def snap(index: int = 11, term: int = 11, **cs: list[int]) -> Snapshot:
    return Snapshot(metadata=SnapshotMetadata(index=index, term=term, conf_state=ConfState(**cs)))


def _testing_snap() -> Snapshot:
    return snap(voters=[1, 2])


def leader_after_restore(voters: list[int]) -> Raft:
    """A leader whose log was compacted into the testing snapshot (index 11)."""
    r = new_raft(1, 10, 1, new_storage(voters))
    r._restore(_testing_snap())
    r.become_candidate()
    r.become_leader()
    return r


def test_sending_snapshot_sets_pending_snapshot() -> None:
    sm = leader_after_restore([1])
    # Node 2 needs entries before the first index: only a snapshot will do.
    sm.prs.progress[2].next = sm.raft_log.first_index()
    sm.step(Message(type=MsgAppResp, from_=2, to=1, index=sm.prs.progress[2].next - 1, reject=True))
    assert sm.prs.progress[2].pending_snapshot == 11
    assert sm.prs.progress[2].state == ProgressState.SNAPSHOT


def test_pending_snapshot_pauses_replication() -> None:
    sm = leader_after_restore([1, 2])
    sm.prs.progress[2].become_snapshot(11)
    sm.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry(data=b"somedata")]))
    assert read_messages(sm) == []


def test_snapshot_failure() -> None:
    sm = leader_after_restore([1, 2])
    pr = sm.prs.progress[2]
    pr.next = 1
    pr.become_snapshot(11)
    sm.step(Message(type=MsgSnapStatus, from_=2, to=1, reject=True))
    pr = sm.prs.progress[2]
    # The snapshot never applied: probe from the last known match.
    assert pr.pending_snapshot == 0 and pr.next == 1 and pr.probe_sent
    assert pr.state == ProgressState.PROBE


def test_snapshot_succeed() -> None:
    sm = leader_after_restore([1, 2])
    pr = sm.prs.progress[2]
    pr.next = 1
    pr.become_snapshot(11)
    sm.step(Message(type=MsgSnapStatus, from_=2, to=1, reject=False))
    pr = sm.prs.progress[2]
    # The follower has the snapshot: probe right after it, after its ack.
    assert pr.pending_snapshot == 0 and pr.next == 12 and pr.probe_sent
    assert pr.state == ProgressState.PROBE


def test_snapshot_abort() -> None:
    sm = leader_after_restore([1, 2])
    pr = sm.prs.progress[2]
    pr.next = 1
    pr.become_snapshot(11)
    # An ack at or past the pending snapshot's index ends the snapshot state: the
    # follower goes to REPLICATE and gets the leader's empty entry (index 12) at once.
    sm.step(Message(type=MsgAppResp, from_=2, to=1, index=11))
    pr = sm.prs.progress[2]
    assert pr.pending_snapshot == 0 and pr.state == ProgressState.REPLICATE
    assert pr.next == 13 and pr.inflights.count() == 1


def test_provide_snap() -> None:
    sm = leader_after_restore([1])
    sm.prs.progress[2].next = sm.raft_log.first_index()
    sm.step(Message(type=MsgAppResp, from_=2, to=1, index=sm.prs.progress[2].next - 1, reject=True))
    msgs = read_messages(sm)
    assert [m.type for m in msgs] == [MsgSnap]
    assert msgs[0].snapshot.metadata.index == 11


def test_ignore_providing_snap() -> None:
    # A follower not recently active gets no snapshot (it may be down; the
    # snapshot is expensive).
    sm = leader_after_restore([1])
    sm.prs.progress[2].next = sm.raft_log.first_index() - 1
    sm.prs.progress[2].recent_active = False
    sm.step(Message(type=MsgProp, from_=1, to=1, entries=[Entry(data=b"somedata")]))
    assert read_messages(sm) == []


def test_restore() -> None:
    s = snap(voters=[1, 2, 3])
    sm = new_raft(1, 10, 1, new_storage([1, 2]))
    assert sm._restore(s)
    assert sm.raft_log.last_index() == 11
    assert sm.raft_log.term(11) == 11
    assert sm.prs.voter_ids() == [1, 2, 3]
    assert not sm._restore(s)
    # Not promotable until the snapshot is persisted and applied.
    for _ in range(sm.randomized_election_timeout):
        sm.tick()
    assert sm.state == FOLLOWER


def test_restore_with_learner() -> None:
    s = snap(voters=[1, 2], learners=[3])
    sm = new_raft(3, 8, 2, new_storage([1, 2], [3]))
    assert sm._restore(s)
    assert sm.raft_log.last_index() == 11 and sm.raft_log.term(11) == 11
    assert sm.prs.voter_ids() == [1, 2] and sm.prs.learner_ids() == [3]
    assert all(not sm.prs.progress[v].is_learner for v in (1, 2))
    assert sm.prs.progress[3].is_learner
    assert not sm._restore(s)


def test_restore_with_voters_outgoing() -> None:
    s = snap(voters=[2, 3, 4], voters_outgoing=[1, 2, 3])
    sm = new_raft(1, 10, 1, new_storage([1, 2]))
    assert sm._restore(s)
    assert sm.raft_log.last_index() == 11 and sm.raft_log.term(11) == 11
    assert sm.prs.voter_ids() == [1, 2, 3, 4]
    assert not sm._restore(s)
    for _ in range(sm.randomized_election_timeout):
        sm.tick()
    assert sm.state == FOLLOWER


def test_restore_voter_to_learner() -> None:
    # A snapshot may fold "remove 3, re-add 3 as learner" into one ConfState; the
    # voter must accept it or be cut off from the log for good.
    sm = new_raft(3, 10, 1, new_storage([1, 2, 3]))
    assert not sm.is_learner
    assert sm._restore(snap(voters=[1, 2], learners=[3]))
    assert sm.is_learner


def test_restore_learner_promotion() -> None:
    sm = new_raft(3, 10, 1, new_storage([1, 2], [3]))
    assert sm.is_learner
    assert sm._restore(snap(voters=[1, 2, 3]))
    assert not sm.is_learner


def test_restore_refuses_snapshot_without_us() -> None:
    sm = new_raft(3, 10, 1, new_storage([1, 2, 3]))
    assert not sm._restore(snap(voters=[1, 2]))
    assert sm.raft_log.last_index() == 0


def test_restore_ignore_snapshot() -> None:
    sm = new_raft(1, 10, 1, new_storage([1, 2]))
    sm.raft_log.append([Entry(term=1, index=i) for i in (1, 2, 3)])
    sm.raft_log.commit_to(1)
    # Not newer than the commit index: ignored.
    assert not sm._restore(snap(index=1, term=1, voters=[1, 2]))
    assert sm.raft_log.committed == 1
    # We already have the entry: ignored, but the commit index moves up to it.
    assert not sm._restore(snap(index=2, term=1, voters=[1, 2]))
    assert sm.raft_log.committed == 2


def test_restore_from_snap_msg() -> None:
    sm = new_raft(2, 10, 1, new_storage([1, 2]))
    m = Message(type=MsgSnap, from_=1, term=2)
    m.snapshot.CopyFrom(snap(voters=[1, 2]))
    sm.step(m)
    assert sm.lead == 1 and sm.term == 2
    assert sm.raft_log.last_index() == 11
    # The ack waits for the snapshot to be persisted, and then acknowledges it.
    msgs = read_messages(sm)
    assert [(x.type, x.to, x.index, x.reject) for x in msgs] == [(MsgAppResp, 1, 11, False)]


def test_learner_receive_snapshot() -> None:
    s = snap(voters=[1], learners=[2])
    n1 = new_node(1, [1], [2])
    n2 = new_node(2, [1], [2])
    assert n1.raft._restore(s)
    n1.process_ready()  # persists and applies the snapshot
    assert n1.storage.snapshot().metadata.index == 11 and n1.raft.raft_log.applied == 11
    nt = Network(n1, n2)
    n1.raft.randomized_election_timeout = n1.raft.election_timeout
    n1.tick(n1.raft.election_timeout)
    nt.stabilize()
    nt.beat(1)
    assert n1.raft.state == LEADER
    assert n2.raft.raft_log.committed == n1.raft.raft_log.committed == 12
    assert n2.storage.snapshot().metadata.index == 11


def _lagging_three(n_props: int) -> Network:
    """Nodes 1-3, 1 leads; 3 is cut off while `n_props` entries commit, then the
    leader snapshots and compacts its log."""
    nt = Network(None, None, None)
    nt.hup(1)
    nt.isolate(3)
    for _ in range(n_props):
        nt.propose(1, b"")
    lead = nt[1].raft
    applied = lead.raft_log.applied
    assert applied == n_props + 1
    nt[1].storage.create_snapshot(applied, ConfState(voters=lead.prs.voter_ids()), b"snapdata")
    nt[1].storage.compact(applied)
    nt.recover()
    return nt


def test_slow_node_restore() -> None:
    nt = _lagging_three(101)
    lead = nt[1].raft
    # Heartbeats until the leader knows 3 is active (it only sends snapshots to
    # recently active followers).
    for _ in range(10):
        nt.beat(1)
        if lead.prs.progress[3].recent_active:
            break
    assert lead.prs.progress[3].recent_active
    nt.propose(1, b"")  # triggers the snapshot
    follower = nt[3]
    nt.propose(1, b"")  # and a commit
    assert follower.raft.raft_log.committed == lead.raft_log.committed
    assert follower.storage.snapshot().metadata.index == 102
    assert follower.storage.snapshot().data == b"snapdata"
    # 3 applied only what came after the snapshot.
    assert [e.index for e in follower.applied] == [1, 103, 104]


def test_report_snapshot_failure_then_retry() -> None:
    nt = _lagging_three(10)
    lead_node = nt[1]
    lead = lead_node.raft
    # Lose the first snapshot on the way.
    lost: list[Message] = []

    def hook(m: Message) -> bool:
        if m.type == MsgSnap and not lost:
            lost.append(m)
            return False
        return True

    nt.msg_hook = hook
    nt.beat(1)
    assert lost and lead.prs.progress[3].state == ProgressState.SNAPSHOT
    # While the snapshot is in flight, nothing else is sent to 3.
    nt.propose(1, b"during")
    assert nt[3].raft.raft_log.last_index() == 1
    lead_node.rn.report_snapshot(3, SnapshotStatus.FAILURE)
    pr = lead.prs.progress[3]
    assert pr.state == ProgressState.PROBE and pr.pending_snapshot == 0 and pr.probe_sent
    # The next heartbeat response unpauses the probe; the snapshot is sent again.
    nt.beat(1)
    assert len(lost) == 1
    assert nt[3].raft.raft_log.committed == lead.raft_log.committed
    assert lead.prs.progress[3].state == ProgressState.REPLICATE
    assert nt[3].applied_data() == [b"during"]


def test_report_snapshot_finish() -> None:
    nt = _lagging_three(10)
    lead_node = nt[1]
    lead = lead_node.raft
    held: list[Message] = []

    def hook(m: Message) -> bool:
        # Hold 3's acks: the leader learns of the snapshot only by the report.
        if m.from_ == 3 and m.type == MsgAppResp and not m.reject:
            held.append(m)
            return False
        return True

    nt.msg_hook = hook
    nt.beat(1)
    assert lead.prs.progress[3].state == ProgressState.SNAPSHOT
    assert nt[3].storage.snapshot().metadata.index == 11
    lead_node.rn.report_snapshot(3, SnapshotStatus.FINISH)
    pr = lead.prs.progress[3]
    assert pr.state == ProgressState.PROBE and pr.next == 12
    nt.msg_hook = None
    nt.beat(1)
    assert lead.prs.progress[3].state == ProgressState.REPLICATE
    assert nt[3].raft.raft_log.committed == lead.raft_log.committed


def test_recv_msg_unreachable() -> None:
    s = new_storage([1, 2])
    s.append([Entry(term=t, index=i) for i, t in ((1, 1), (2, 2), (3, 3))])
    r = new_raft(1, 10, 1, s)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    pr = r.prs.progress[2]
    pr.match = 3
    pr.become_replicate()
    pr.next = 6
    r.step(Message(type=MsgUnreachable, from_=2, to=1))
    pr = r.prs.progress[2]
    assert pr.state == ProgressState.PROBE and pr.next == pr.match + 1


def test_report_unreachable_moves_replicating_follower_to_probe() -> None:
    nt = Network(None, None, None)
    nt.hup(1)
    nt.propose(1, b"x")
    rn = nt[1].rn
    assert nt[1].raft.prs.progress[2].state == ProgressState.REPLICATE
    nt.isolate(2)
    nt.propose(1, b"y")  # sent optimistically, lost
    pr = nt[1].raft.prs.progress[2]
    assert pr.next == nt[1].raft.raft_log.last_index() + 1 and pr.inflights.count() == 1
    rn.report_unreachable(2)
    pr = nt[1].raft.prs.progress[2]
    assert pr.state == ProgressState.PROBE and pr.next == pr.match + 1
    # A probing follower is caught up by the next heartbeat round.
    nt.recover()
    nt.beat(1)
    assert nt[2].applied_data() == [b"x", b"y"]
    # An unreachable report about a probing follower changes nothing.
    rn.report_unreachable(3)
    pr3 = nt[1].raft.prs.progress[3]
    assert pr3.state == ProgressState.PROBE
    before = repr(pr3)
    rn.report_unreachable(3)
    assert repr(nt[1].raft.prs.progress[3]) == before


@pytest.mark.parametrize("status", [SnapshotStatus.FINISH, SnapshotStatus.FAILURE])
def test_report_snapshot_ignored_outside_snapshot_state(status: SnapshotStatus) -> None:
    nt = Network(None, None, None)
    nt.hup(1)
    before = repr(nt[1].raft.prs.progress[2])
    nt[1].rn.report_snapshot(2, status)
    assert repr(nt[1].raft.prs.progress[2]) == before


def test_stale_rejection_never_moves_next_below_match() -> None:
    # A duplicated, stale rejection whose probe index happens to equal next - 1 again
    # must not move next to or below match (etcd 6439482, "next index shall be larger
    # than match index"): here that would send a needless snapshot, since the
    # entries after the hint were compacted.
    s = new_storage([1, 2])
    s.append([Entry(term=1, index=i) for i in range(1, 11)])
    s.compact(8)
    r = new_raft(1, 10, 1, s)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    pr = r.prs.progress[2]
    pr.match = 10
    pr.become_probe()
    assert pr.next == 11
    # The rejection of an old probe at index 10, from before 2 caught up.
    r.step(Message(type=MsgAppResp, from_=2, to=1, term=r.term, index=10, reject=True,
                   reject_hint=5, log_term=1))
    pr = r.prs.progress[2]
    assert pr.match < pr.next
    assert MsgSnap not in [m.type for m in read_messages(r)]
    assert pr.state == ProgressState.PROBE


def _conf_change_entry(index: int, term: int, type: int, node_id: int) -> Entry:
    return Entry(index=index, term=term, type=EntryConfChange,
                 data=ConfChange(type=type, node_id=node_id).SerializeToString())


def _committed_in_flight(*ents: Entry) -> tuple[RawNode, MemoryStorage, Ready]:
    """Node 3, not yet in the configuration {1, 2}, takes a MsgApp from leader 1 that
    commits `ents`, and the Ready handing them out for apply; its entries persisted, the
    application has not applied them yet (ZeroNode awaits the WAL write here)."""
    s = new_storage([1, 2])
    rn = new_rawnode(3, 10, 1, s)
    rn.step(Message(type=MsgApp, from_=1, to=3, term=1, index=0, log_term=0, entries=list(ents),
                    commit=ents[-1].index))
    rd = rn.ready()
    assert [e.index for e in rd.committed_entries] == [e.index for e in ents]
    s.append(rd.entries)
    if rd.hard_state is not None:
        s.set_hard_state(rd.hard_state)
    return rn, s, rd


def _apply_and_advance(rn: RawNode, s: MemoryStorage, rd: Ready) -> None:
    for e in rd.committed_entries:
        if e.type == EntryConfChange:
            rn.apply_conf_change(ConfChange.FromString(e.data))
    rn.advance(rd)


def _snap_msg(index: int, **cs: list[int]) -> Message:
    m = Message(type=MsgSnap, from_=1, to=3, term=1)
    m.snapshot.CopyFrom(snap(index=index, term=1, **cs))
    return m


def _drain(rn: RawNode, s: MemoryStorage) -> None:
    """Process Readies until there is none: persist a snapshot, apply, advance."""
    while rn.has_ready():
        rd = rn.ready()
        if rd.snapshot is not None:
            s.apply_snapshot(rd.snapshot)
        s.append(rd.entries)
        _apply_and_advance(rn, s, rd)


def test_snapshot_waits_for_conf_changes_handed_out_for_apply() -> None:
    """A snapshot stepped between ready() and the apply of that Ready's committed conf
    changes (raftcore.Node steps messages at any time; ZeroNode awaits its WAL write
    there) must not be restored: the application would then apply the older conf
    changes on top of the snapshot's newer configuration (etcd-io/etcd#11510). Here
    AddLearner(3) is in flight and the snapshot's configuration already promoted 3:
    restoring first left 3 a learner for good. The follower ignores the snapshot until
    it has applied them; the leader sends it again."""
    rn, s, rd = _committed_in_flight(_conf_change_entry(1, 1, ConfChangeAddLearnerNode, 3))
    rn.step(_snap_msg(5, voters=[1, 2, 3]))
    first = [(m.index, m.reject) for m in rn.raft.msgs + rn.raft.msgs_after_append
             if m.type == MsgAppResp and m.to == 1]
    _apply_and_advance(rn, s, rd)
    _drain(rn, s)
    rn.step(_snap_msg(5, voters=[1, 2, 3]))  # the leader's next attempt (or a duplicate)
    _drain(rn, s)
    assert rn.raft.raft_log.applied == 5
    assert rn.raft.prs.conf_state() == ConfState(voters=[1, 2, 3]), "the snapshot's configuration"
    assert not rn.raft.is_learner
    # The first one was ignored: answered with the commit index, not the snapshot's.
    assert first == [(1, False)]


def test_snapshot_restored_while_entries_without_conf_changes_are_in_flight() -> None:
    """Only conf changes make the interleaving unsafe: with ordinary entries in flight
    the snapshot is restored at once (they are applied, then the snapshot replaces the
    state in the next Ready), so a busy follower does not bounce snapshots."""
    rn, s, rd = _committed_in_flight(Entry(index=1, term=1, data=b"x"), Entry(index=2, term=1, data=b"y"))
    rn.step(_snap_msg(5, voters=[1, 2], learners=[3]))
    assert rn.raft.raft_log.committed == 5 and rn.raft.raft_log.unstable.snapshot is not None
    _apply_and_advance(rn, s, rd)
    rd = rn.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 5
    s.apply_snapshot(rd.snapshot)
    _apply_and_advance(rn, s, rd)
    assert rn.raft.prs.conf_state() == ConfState(voters=[1, 2], learners=[3])
    assert rn.raft.raft_log.applied == 5
