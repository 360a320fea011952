"""RawNode: the application-facing API of the core (etcd rawnode.go).

The application drives it from one thread: tick(), step(), propose() in; when
has_ready(), take ready(), persist, send, apply, then advance(). See Ready for the
exact contract.

Held responses: vote and append responses (and the leader's own append ack) wait
inside raftcore until the state they acknowledge is durable. ready() releases them in
the same Ready when that Ready persists nothing new, else they are released by
advance() and go out with the next Ready (thesis §3.8).
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import Config
from .confchange import to_v2
from .errors import RaftError, StepLocalMsgError
from .raft import NONE, Raft
from .raftpb import (
    ConfChange,
    ConfChangeAddNode,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    HardState,
    Message,
    MsgAppResp,
    MsgBeat,
    MsgCheckQuorum,
    MsgHeartbeatResp,
    MsgHup,
    MsgProp,
    MsgReadIndex,
    MsgReadIndexResp,
    MsgPreVoteResp,
    MsgSnapStatus,
    MsgTransferLeader,
    MsgUnreachable,
    MsgVoteResp,
)
from .ready import (
    ProgressStatus,
    Ready,
    SnapshotStatus,
    SoftState,
    StateType,
    Status,
)

__all__ = ["RawNode"]

_LOCAL_TYPES = frozenset((MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus, MsgCheckQuorum))
_RESPONSE_TYPES = frozenset((MsgAppResp, MsgVoteResp, MsgHeartbeatResp, MsgUnreachable,
                             MsgReadIndexResp, MsgPreVoteResp))


class RawNode:
    """A Raft node without concurrency: the application calls it from one thread."""

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        # The last HardState the application persisted (advance() confirms it).
        self._persisted_hard = self._prev_hard
        # Captured by ready(), acted on by advance(): responses to other nodes that
        # wait for this Ready's persistence, and messages to ourselves.
        self._release_on_advance: list[Message] = []
        self._steps_on_advance: list[Message] = []
        self._persisted_rd: Ready | None = None  # the Ready persisted() was told of
        self._awaiting_advance = False

    # -- setup ----------------------------------------------------------------------------
    def bootstrap(self, peers: Sequence[int]) -> None:
        """Initialize a brand-new node's configuration: one ConfChangeAddNode entry per
        peer at term 1, indexes 1..N, committed and already applied to the
        configuration. The first Ready returns them in entries and committed_entries;
        applying them again with apply_conf_change changes nothing."""
        if not peers:
            raise RaftError("bootstrap needs at least one peer")
        if len(set(peers)) != len(peers) or any(p <= 0 for p in peers):
            raise RaftError(f"bootstrap peers must be distinct positive ids, got {list(peers)}")
        r = self.raft
        if r.raft_log.storage.last_index() != 0 or r.raft_log.last_index() != 0:
            raise RaftError("can't bootstrap a nonempty Storage")
        # Nothing is persisted yet: the first Ready must carry the HardState.
        self._prev_hard = HardState()
        r.become_follower(1, NONE)
        ents = [
            Entry(type=EntryConfChange, term=1, index=i,
                  data=ConfChange(type=ConfChangeAddNode, node_id=p).SerializeToString())
            for i, p in enumerate(peers, 1)
        ]
        r.raft_log.append(ents)
        # Committed but not applied: the application sees them in committed_entries.
        r.raft_log.committed = len(ents)
        for p in peers:
            r.apply_conf_change(to_v2(ConfChange(type=ConfChangeAddNode, node_id=p)))

    # -- input ------------------------------------------------------------------------------
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with PreVote when enabled)."""
        self.raft.step(Message(type=MsgHup))

    def propose(self, data: bytes) -> None:
        """Propose data to be appended to the log. Raises ProposalDroppedError when it
        cannot be accepted; acceptance does not mean it will commit."""
        self.raft.step(Message(type=MsgProp, from_=self.raft.id, entries=[Entry(data=data)]))

    def propose_batch(self, datas: Sequence[bytes]) -> None:
        """Propose several entries at once (one MsgProp): all are accepted or the
        whole batch is dropped with ProposalDroppedError."""
        if not datas:
            return
        self.raft.step(Message(type=MsgProp, from_=self.raft.id, entries=[Entry(data=d) for d in datas]))

    def propose_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        if isinstance(cc, ConfChangeV2):
            e = Entry(type=EntryConfChangeV2, data=cc.SerializeToString())
        elif isinstance(cc, ConfChange):
            e = Entry(type=EntryConfChange, data=cc.SerializeToString())
        else:
            raise TypeError(f"expected ConfChange or ConfChangeV2, got {type(cc).__name__}")
        self.raft.step(Message(type=MsgProp, from_=self.raft.id, entries=[e]))

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a committed conf change to the configuration; returns the new
        ConfState (to store in the next snapshot)."""
        return self.raft.apply_conf_change(to_v2(cc))

    def check_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        """Raise ConfChangeError if `cc` could not be applied to the current configuration
        (what apply_conf_change would raise once it is committed). Changes nothing."""
        self.raft.changed_config(to_v2(cc))

    def conf_change_pending(self) -> bool:
        """Whether a conf change proposed now would be replaced by an empty entry: one is
        still unapplied (a new leader counts its whole log until it has applied it)."""
        r = self.raft
        return bool(r.pending_conf_index > r.raft_log.applied)

    def last_index(self) -> int:
        """The index of the last entry of the log, persisted or not (a leader's own
        proposal is there as soon as propose() returns)."""
        return self.raft.raft_log.last_index()

    def term(self, i: int) -> int:
        """The term of entry i. Raises CompactedError/UnavailableError outside
        [first_index - 1, last_index]."""
        return self.raft.raft_log.term(i)

    def election_elapsed(self) -> int:
        """Ticks since the election timer was last reset; on a follower, since it last
        heard from its leader (for health checks: more than election_tick means silence)."""
        return self.raft.election_elapsed

    def step(self, m: Message) -> None:
        """Feed a message received from a peer. Local-only types raise
        StepLocalMsgError; responses from peers not in the configuration are
        ignored."""
        t = m.type
        if t in _LOCAL_TYPES:
            raise StepLocalMsgError(f"message type {t} is local-only and cannot be stepped")
        if t in _RESPONSE_TYPES and m.from_ not in self.raft.prs.progress:
            return
        self.raft.step(m)

    def forget_leader(self) -> None:
        """See Raft.forget_leader: a follower forgets its leader (etcd's ForgetLeader)."""
        self.raft.forget_leader()

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(type=MsgTransferLeader, from_=transferee))

    def read_index(self, rctx: bytes) -> None:
        """Request a linearizable read point; the answer arrives as a ReadState with
        request_ctx == rctx in a later Ready. Silently dropped without a leader."""
        self.raft.step(Message(type=MsgReadIndex, entries=[Entry(data=rctx)]))

    def local_read_index(self) -> int | None:
        """The read index a leader that is its configuration's only voter may use
        without a ReadIndex round — its commit index, which is what raft would answer
        the round with at once (as etcd does for a singleton) — or None when a round is
        needed. Nothing else can commit in such a configuration."""
        r = self.raft
        if (r.state == StateType.LEADER and r.prs.is_singleton() and r.id in r.prs.config.voters.incoming
                and r.committed_entry_in_current_term()):
            return r.raft_log.committed
        return None

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(type=MsgUnreachable, from_=node_id))

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        self.raft.step(Message(type=MsgSnapStatus, from_=node_id, reject=status == SnapshotStatus.FAILURE))

    # -- output -----------------------------------------------------------------------------
    def has_ready(self) -> bool:
        r = self.raft
        r.flush_bcast()
        if r.msgs or r.msgs_after_append or r.read_states:
            return True
        if r.lead != self._prev_soft.lead or r.state != self._prev_soft.raft_state:
            return True
        ph = self._prev_hard
        if r.term != ph.term or r.vote != ph.vote or r.raft_log.committed != ph.commit:
            return True
        u = r.raft_log.unstable
        if u.next_snapshot() is not None or u.offset_in_progress < u.offset + len(u.entries):
            return True
        return r.raft_log.has_next_committed_ents()

    def ready(self) -> Ready:
        if self._awaiting_advance:
            raise RaftError("ready() called again before advance() of the previous Ready")
        r = self.raft
        r.flush_bcast()
        log = r.raft_log
        u = log.unstable
        entries = u.next_entries()
        snapshot = u.next_snapshot()
        committed = log.next_committed_ents()

        soft: SoftState | None = None
        if r.lead != self._prev_soft.lead or r.state != self._prev_soft.raft_state:
            soft = r.soft_state()
            self._prev_soft = soft
        hs = r.hard_state()
        ph = self._prev_hard
        hard: HardState | None = None
        if hs.term != ph.term or hs.vote != ph.vote or hs.commit != ph.commit:
            hard = hs
        must = bool(entries) or hs.term != ph.term or hs.vote != ph.vote
        if hard is not None:
            self._prev_hard = hs

        messages = r.msgs
        r.msgs = []
        held = r.msgs_after_append
        r.msgs_after_append = []
        me = r.id
        to_self = [m for m in held if m.to == me]
        to_others = [m for m in held if m.to != me]
        # Everything the held responses acknowledge is durable unless this Ready (or
        # an earlier, unconfirmed one) still has to persist entries, a snapshot, or
        # a new term/vote.
        pd = self._persisted_hard
        unpersisted = bool(u.entries) or u.snapshot is not None or hs.term != pd.term or hs.vote != pd.vote
        if unpersisted:
            self._release_on_advance = to_others
        elif to_others:
            messages.extend(to_others)
        self._steps_on_advance = to_self

        read_states = r.read_states
        r.read_states = []

        u.accept_in_progress()
        if committed:
            log.accept_applying(committed[-1].index)
            r.reduce_uncommitted_size(committed)
        self._awaiting_advance = True
        return Ready(soft_state=soft, hard_state=hard, read_states=read_states, entries=entries,
                     snapshot=snapshot, committed_entries=committed, messages=messages, must_sync=must)

    def persisted(self, rd: Ready) -> list[Message]:
        """Optional, between ready() and advance(rd): the application has durably
        written `rd`'s snapshot, entries and hard state, and has not necessarily applied
        its committed entries yet. Counts our own durable log (which may commit more)
        and returns the held responses — acks of what is now durable — for the
        application to send at once, instead of in the Ready after advance(): a
        follower's ack then does not wait for its apply (the commit latency of every
        replicated write)."""
        if self._persisted_rd is rd:
            return []
        self._persisted_rd = rd
        log = self.raft.raft_log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.hard_state is not None:
            self._persisted_hard = rd.hard_state
        out = self._release_on_advance
        self._release_on_advance = []
        steps = self._steps_on_advance
        self._steps_on_advance = []
        for m in steps:
            self.raft.step(m)
        return out

    def advance(self, rd: Ready) -> None:
        """The application persisted and applied `rd`: release held responses (unless
        persisted(rd) handed them over already), count our own durable log, and mark
        the committed entries applied."""
        r = self.raft
        log = r.raft_log
        self._awaiting_advance = False
        if self._persisted_rd is not rd:
            r.msgs.extend(self.persisted(rd))
        self._persisted_rd = None
        if rd.snapshot is not None:
            idx = rd.snapshot.metadata.index
            if idx > log.applied and idx <= log.committed:
                r.applied_to(idx)
        if rd.committed_entries:
            r.applied_to(rd.committed_entries[-1].index)

    # -- inspection --------------------------------------------------------------------------
    def status(self) -> Status:
        r = self.raft
        progress: dict[int, ProgressStatus] = {}
        if r.state == StateType.LEADER:
            for vid, pr in r.prs.progress.items():
                progress[vid] = ProgressStatus(
                    match=pr.match, next=pr.next, state=pr.state.name, is_learner=pr.is_learner,
                    recent_active=pr.recent_active, paused=pr.is_paused(), inflight=pr.inflights.count())
        v = r.prs.config.voters
        return Status(
            id=r.id, term=r.term, vote=r.vote, commit=r.raft_log.committed, lead=r.lead,
            raft_state=r.state, applied=r.raft_log.applied, lead_transferee=r.lead_transferee,
            progress=progress, voters=tuple(sorted(v.incoming)), voters_outgoing=tuple(sorted(v.outgoing)),
            learners=tuple(sorted(r.prs.config.learners)),
        )
