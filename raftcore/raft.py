"""The Raft state machine (etcd raft.go): one cohesive machine, no I/O, no clock.

Rules this module follows (paper = Ongaro & Ousterhout 2014, thesis = Ongaro 2014):
- Time is ticks. A follower/candidate campaigns after a randomized election timeout in
  [election_tick, 2*election_tick) drawn from the injected rng (§5.2).
- step() compares terms once (§5.1), then hands the message to the role's step
  function (_step_leader / _step_candidate / _step_follower), swapped by become_*().
- Nothing is sent: _send() appends to `msgs`, or to `msgs_after_append` for vote and
  append responses, which must wait until the state they acknowledge is persisted
  (thesis §3.8). The leader counts its own log only through such a self-addressed
  MsgAppResp, i.e. after its own write is durable.
- PreVote (thesis §9.6), CheckQuorum with the vote lease (§6.2 / thesis §4.2.3),
  commit only of current-term entries (§5.4.2), fast log rejection (§5.3),
  single-step and joint membership changes effective on apply (thesis §4.1, §4.3),
  ReadIndex (thesis §6.4), leader transfer (thesis §3.10).
"""

from __future__ import annotations

import logging
import random

from . import confchange
from .config import Config
from .errors import (
    CompactedError,
    ConfChangeError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
)
from .log import RaftLog
from .quorum import VoteResult
from .raftpb import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryConfChange,
    EntryConfChangeV2,
    EntryNormal,
    HardState,
    Message,
    MsgApp,
    MsgAppResp,
    MsgBeat,
    MsgCheckQuorum,
    MsgHeartbeat,
    MsgHeartbeatResp,
    MsgHup,
    MsgPreVote,
    MsgPreVoteResp,
    MsgProp,
    MsgReadIndex,
    MsgReadIndexResp,
    MsgSnap,
    MsgSnapStatus,
    MsgTimeoutNow,
    MsgTransferLeader,
    MsgUnreachable,
    MsgVote,
    MsgVoteResp,
    Snapshot,
)
from .read_only import ReadOnly, ReadOnlyOption
from .ready import ReadState, SoftState, StateType
from .storage import NO_LIMIT
from .tracker import Progress, ProgressState, ProgressTracker, TrackerConfig

__all__ = ["Raft", "NONE", "CAMPAIGN_PRE_ELECTION", "CAMPAIGN_ELECTION", "CAMPAIGN_TRANSFER"]

NONE = 0

# Campaign types; CAMPAIGN_TRANSFER is also the context of a transfer's MsgVote, which
# lets it bypass the vote lease (thesis §3.10).
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"

_VOTE_RESP = {MsgVote: MsgVoteResp, MsgPreVote: MsgPreVoteResp}
# Types that carry the candidate's prospective term instead of the sender's term.
_VOTE_TYPES = frozenset((MsgVote, MsgVoteResp, MsgPreVote, MsgPreVoteResp))
# Responses that acknowledge persisted state: held until that state is durable.
_AFTER_APPEND_TYPES = frozenset((MsgAppResp, MsgVoteResp, MsgPreVoteResp))


def _payload_size(ents: list[Entry]) -> int:
    return sum(len(e.data) for e in ents)


class Raft:
    """The core state machine. Applications use RawNode; tests may inspect this."""

    def __init__(self, c: Config) -> None:
        self.id = c.id
        self.logger = c.logger if c.logger is not None else logging.getLogger("raftcore")
        self.rng = c.rng if c.rng is not None else random.Random()
        max_size = c.max_size_per_msg if c.max_size_per_msg > 0 else NO_LIMIT
        max_committed = c.max_committed_size_per_ready or c.max_size_per_msg
        self.raft_log = RaftLog(c.storage, self.logger, max_committed if max_committed > 0 else NO_LIMIT)
        hs, cs = c.storage.initial_state()

        self.term = 0
        self.vote = NONE
        self.max_msg_size = max_size
        self.max_uncommitted_size = c.max_uncommitted_entries_size or NO_LIMIT
        self.prs = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.lead = NONE
        # The id of the transfer target when a leader transfer is in progress.
        self.lead_transferee = NONE
        # Only one conf change may be pending (in the log, not yet applied); this is
        # the index of the latest one, and proposals of another are refused until the
        # application has applied up to it.
        self.pending_conf_index = 0
        # Payload bytes of the uncommitted tail (leader only).
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        # Ticks since the last election timeout (followers/candidates) or since the
        # last CheckQuorum (leader).
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = 0
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.step_down_on_removal = c.step_down_on_removal
        self.pending_read_index_messages: list[Message] = []
        # Set when a proposal was appended and MsgApps are owed to followers; flushed
        # by RawNode before building a Ready, so a burst of proposals becomes one
        # MsgApp per follower instead of one per proposal.
        self.bcast_pending = False
        self._tick = self._tick_election
        self._step = self._step_follower

        cfg, prs = confchange.restore(self.prs, self.raft_log.last_index(), cs)
        got = self._switch_to_config(cfg, prs)
        _assert_conf_states_equivalent(cs, got)

        if not (hs.term == 0 and hs.vote == 0 and hs.commit == 0):
            self._load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

        self.logger.info(
            f"raft {self.id} [peers: {sorted(self.prs.config.voters.ids())}, term: {self.term}, "
            f"commit: {self.raft_log.committed}, applied: {self.raft_log.applied}, "
            f"lastindex: {self.raft_log.last_index()}, lastterm: {self.raft_log.last_term()}] started")

    # -- state snapshots ------------------------------------------------------------------
    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]")
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # -- sending ----------------------------------------------------------------------------
    def _send(self, m: Message) -> None:
        if m.from_ == NONE:
            m.from_ = self.id
        t = m.type
        if t in _VOTE_TYPES:
            if m.term == 0:
                # Vote messages carry the term they are for; 0 is a bug.
                raise AssertionError(f"term should be set when sending {t}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {t} (was {m.term})")
            # Proposals and read requests forwarded to the leader are treated as
            # local messages there and carry no term.
            if t != MsgProp and t != MsgReadIndex:
                m.term = self.term
        if t in _AFTER_APPEND_TYPES:
            held = self.msgs_after_append
            # A later self-ack subsumes an earlier one still waiting (the log is
            # persisted in order), so a burst of proposals costs one self-ack.
            if (t == MsgAppResp and m.to == self.id and held and held[-1].type == MsgAppResp
                    and held[-1].to == self.id and held[-1].term == m.term):
                held[-1].index = m.index
            else:
                held.append(m)
        else:
            self.msgs.append(m)

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, True)

    def _maybe_send_append(self, to: int, send_if_empty: bool, unthrottle: bool = False) -> bool:
        """Send an append (or a snapshot) to `to` if flow control allows; returns
        whether a message was sent. With `unthrottle`, a follower paused by a full
        inflight window still gets an entry-less MsgApp (see MsgHeartbeatResp)."""
        pr = self.prs.progress[to]
        throttled = unthrottle and pr.state == ProgressState.REPLICATE and pr.inflights.full()
        if pr.is_paused() and not throttled:
            return False
        log = self.raft_log
        prev = pr.next - 1
        # Entries before first_index were compacted into the snapshot: a follower
        # that needs them gets the snapshot instead.
        need_snap = prev < log.first_index() - 1
        ents: list[Entry] = []
        term = 0
        if not need_snap:
            term = log.term_or_zero(prev)
            if pr.next <= log.last_index() and not throttled:
                try:
                    ents = log.entries(pr.next, self.max_msg_size)
                except CompactedError:
                    # Compacted since first_index() was read (the application may
                    # compact its storage from another thread): send the snapshot.
                    need_snap = True
            elif not send_if_empty:
                return False
        if need_snap:
            if not pr.recent_active:
                self.logger.debug(f"{self.id} ignore sending snapshot to {to} since it is not recently active")
                return False
            try:
                snap = log.snapshot()
            except SnapshotTemporarilyUnavailableError:
                self.logger.debug(f"{self.id} failed to send snapshot to {to} because snapshot is temporarily unavailable")
                return False
            if snap.metadata.index == 0:
                raise AssertionError("need non-empty snapshot")
            self.logger.debug(
                f"{self.id} [firstindex: {log.first_index()}, commit: {log.committed}] sent snapshot"
                f"[index: {snap.metadata.index}, term: {snap.metadata.term}] to {to} [{pr}]")
            pr.become_snapshot(snap.metadata.index)
            m = Message(type=MsgSnap, to=to)
            m.snapshot.CopyFrom(snap)
            self._send(m)
            return True
        m = Message(type=MsgApp, to=to, index=prev, log_term=term, commit=log.committed, entries=ents)
        if ents:
            st = pr.state
            if st == ProgressState.REPLICATE:
                lasti = ents[-1].index
                pr.next = lasti + 1  # optimistic: assume the follower will accept
                pr.inflights.add(lasti, _payload_size(ents) if pr.inflights.max_bytes else 0)
            elif st == ProgressState.PROBE:
                pr.probe_sent = True
            else:
                raise AssertionError(f"{self.id} is sending append in unhandled state {st}")
        self._send(m)
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # A follower's commit must never move past what it is known to have: attach
        # min(match, committed).
        pr = self.prs.progress[to]
        commit = min(pr.match, self.raft_log.committed)
        self._send(Message(type=MsgHeartbeat, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        self.bcast_pending = False
        me = self.id
        for vid in self.prs.progress:
            if vid != me:
                self._send_append(vid)

    def flush_bcast(self) -> None:
        """Send the MsgApps owed after proposals (see bcast_pending)."""
        if self.bcast_pending:
            self.bcast_pending = False
            if self.state == StateType.LEADER:
                me = self.id
                for vid in self.prs.progress:
                    if vid != me:
                        self._maybe_send_append(vid, False)

    def _bcast_heartbeat(self) -> None:
        self._bcast_heartbeat_with_ctx(self.read_only.heartbeat_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        me = self.id
        for vid in self.prs.progress:
            if vid != me:
                self._send_heartbeat(vid, ctx)

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(type=MsgTimeoutNow, to=to))

    # -- commit -----------------------------------------------------------------------------
    def maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.prs.committed(), self.term)

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    # -- role transitions ---------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self._abort_leader_transfer()
        self.prs.reset_votes()
        last = self.raft_log.last_index()
        # Our own match is what is durable; the rest of our log is acknowledged by
        # the self-addressed MsgAppResp once persisted.
        stable = min(self.raft_log.stable_last_index(), last)
        for vid, pr in self.prs.progress.items():
            np = Progress(match=stable if vid == self.id else 0, next=last + 1,
                          inflights=self.prs.new_inflights(), is_learner=pr.is_learner)
            self.prs.progress[vid] = np
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.bcast_pending = False
        self.read_only = ReadOnly(self.read_only.option)

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(self.election_timeout)

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self.logger.info(f"{self.id} became follower at term {self.term}")

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self.logger.info(f"{self.id} became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote (thesis §9.6).
        self._step = self._step_candidate
        self.prs.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self.logger.info(f"{self.id} became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.prs.progress.get(self.id)
        if pr is not None:
            pr.become_replicate()
            pr.recent_active = True
        # Any entry after our last may be a conf change we don't know is applied;
        # conservatively treat the tail as pending (etcd).
        self.pending_conf_index = self.raft_log.last_index()
        # An empty entry of the new term: committing it commits everything before it
        # (§5.4.2) and lets ReadIndex be served (thesis §6.4).
        if not self._append_entry([Entry(type=EntryNormal)]):
            raise AssertionError("empty entry was dropped")
        self.logger.info(f"{self.id} became leader at term {self.term}")

    # -- elections ------------------------------------------------------------------------------
    def promotable(self) -> bool:
        pr = self.prs.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_next_or_in_progress_snapshot()

    def _has_unapplied_conf_changes(self) -> bool:
        return self._has_conf_changes(self.raft_log.committed)

    def _has_conf_changes(self, upto: int) -> bool:
        """Whether a conf change lies in (applied, upto]."""
        log = self.raft_log
        if log.applied >= upto:
            return False
        lo, hi = log.applied + 1, upto + 1
        while lo < hi:
            ents = log.slice(lo, hi, log.max_applying_size)
            for e in ents:
                if e.type == EntryConfChange or e.type == EntryConfChangeV2:
                    return True
            lo += len(ents)
        return False

    def _hup(self, campaign_type: bytes) -> None:
        if self.state == StateType.LEADER:
            self.logger.debug(f"{self.id} ignoring MsgHup because already leader")
            return
        if not self.promotable():
            self.logger.warning(f"{self.id} is unpromotable and can not campaign")
            return
        if self._has_unapplied_conf_changes():
            self.logger.warning(
                f"{self.id} cannot campaign at term {self.term} since there are still pending configuration changes to apply")
            return
        self.logger.info(f"{self.id} is starting a new election at term {self.term}")
        self._campaign(campaign_type)

    def _campaign(self, campaign_type: bytes) -> None:
        if campaign_type == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MsgPreVote
            # PreVote asks for the next term without incrementing ours.
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = MsgVote
            term = self.term
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        ctx = CAMPAIGN_TRANSFER if campaign_type == CAMPAIGN_TRANSFER else b""
        for vid in self.prs.voter_ids():
            if vid == self.id:
                # Our own vote counts once it is durable: the self-addressed response
                # is held with the other after-append messages.
                self._send(Message(type=_VOTE_RESP[vote_msg], to=vid, term=term))
                continue
            self.logger.info(
                f"{self.id} [logterm: {last_term}, index: {last_index}] sent "
                f"{'MsgPreVote' if vote_msg == MsgPreVote else 'MsgVote'} request to {vid} at term {self.term}")
            self._send(Message(type=vote_msg, to=vid, term=term, index=last_index, log_term=last_term, context=ctx))

    def _poll(self, vid: int, granted: bool) -> tuple[int, int, VoteResult]:
        self.prs.record_vote(vid, granted)
        return self.prs.tally_votes()

    def forget_leader(self) -> None:
        """A follower forgets its leader (etcd/raft's MsgForgetLeader): it stays in its
        term, but grants votes and pre-votes again before an election timeout has passed
        (the vote lease ends), so the others can elect at once when the application knows
        the leader is gone (its connection refused: the process died). The leader's next
        message restores it. A no-op on leaders and candidates; refused with lease-based
        reads, whose safety rests on followers honouring the lease."""
        if self.state != StateType.FOLLOWER:
            return
        if self.read_only.option == ReadOnlyOption.LEASE_BASED:
            self.logger.error(f"{self.id} ignoring ForgetLeader: lease-based reads rely on the vote lease")
            return
        if self.lead != NONE:
            self.logger.info(f"{self.id} forgetting leader {self.lead} at term {self.term}")
            self.lead = NONE

    # -- step ----------------------------------------------------------------------------------
    def step(self, m: Message) -> None:
        """Process one message. Raises ProposalDroppedError for a proposal that cannot
        be accepted."""
        mt = m.type
        # Terms are compared once, here (§5.1).
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if mt == MsgVote or mt == MsgPreVote:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = self.check_quorum and self.lead != NONE and self.election_elapsed < self.election_timeout
                if not force and in_lease:
                    # The vote lease (thesis §4.2.3): within an election timeout of
                    # hearing from a leader, don't update the term or grant a vote.
                    self.logger.info(
                        f"{self.id} [logterm: {self.raft_log.last_term()}, index: {self.raft_log.last_index()}, "
                        f"vote: {self.vote}] ignored vote request from {m.from_} [logterm: {m.log_term}, "
                        f"index: {m.index}] at term {self.term}: lease is not expired "
                        f"(remaining ticks: {self.election_timeout - self.election_elapsed})")
                    return
            if mt == MsgPreVote:
                pass  # never change our term in response to a PreVote
            elif mt == MsgPreVoteResp and not m.reject:
                # A granted pre-vote is for the term we will campaign at; the term is
                # raised once a quorum granted it.
                pass
            else:
                self.logger.info(
                    f"{self.id} [term: {self.term}] received a {_mt_name(mt)} message with higher term "
                    f"from {m.from_} [term: {m.term}]")
                if mt == MsgApp or mt == MsgHeartbeat or mt == MsgSnap:
                    self.become_follower(m.term, m.from_)
                else:
                    self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and (mt == MsgHeartbeat or mt == MsgApp):
                # A leader of an older term: tell it our term, so that a node whose
                # term grew while partitioned can be noticed (and, with CheckQuorum,
                # unstick this node by a fresh election).
                self._send(Message(type=MsgAppResp, to=m.from_))
            elif mt == MsgPreVote:
                # Reject with our term so the pre-candidate learns it is behind.
                self.logger.info(
                    f"{self.id} [logterm: {self.raft_log.last_term()}, index: {self.raft_log.last_index()}, "
                    f"vote: {self.vote}] rejected MsgPreVote from {m.from_} at term {self.term}")
                self._send(Message(type=MsgPreVoteResp, to=m.from_, term=self.term, reject=True))
            else:
                self.logger.debug(
                    f"{self.id} [term: {self.term}] ignored a {_mt_name(mt)} message with lower term "
                    f"from {m.from_} [term: {m.term}]")
            return

        if mt == MsgHup:
            self._hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif mt == MsgVote or mt == MsgPreVote:
            # We can vote if this repeats a vote we cast, or we have not voted and
            # know no leader in this term, or it is a PreVote for a future term...
            can_vote = (self.vote == m.from_
                        or (self.vote == NONE and self.lead == NONE)
                        or (mt == MsgPreVote and m.term > self.term))
            # ...and the candidate's log is at least as up to date as ours (§5.4.1).
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                # Learners vote too: a learner may have been promoted without knowing
                # it yet (see etcd's comment in raft.go).
                self.logger.info(
                    f"{self.id} [logterm: {self.raft_log.last_term()}, index: {self.raft_log.last_index()}, "
                    f"vote: {self.vote}] cast {_mt_name(mt)} for {m.from_} [logterm: {m.log_term}, "
                    f"index: {m.index}] at term {self.term}")
                # Answer with the message's term, not ours: a pre-candidate asks for
                # a future term and would ignore an answer at our (older) term.
                self._send(Message(type=_VOTE_RESP[mt], to=m.from_, term=m.term))
                if mt == MsgVote:
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                self.logger.info(
                    f"{self.id} [logterm: {self.raft_log.last_term()}, index: {self.raft_log.last_index()}, "
                    f"vote: {self.vote}] rejected {_mt_name(mt)} from {m.from_} [logterm: {m.log_term}, "
                    f"index: {m.index}] at term {self.term}")
                self._send(Message(type=_VOTE_RESP[mt], to=m.from_, term=self.term, reject=True))
        else:
            self._step(m)

    # -- leader ----------------------------------------------------------------------------------
    def _step_leader(self, m: Message) -> None:
        mt = m.type
        # Messages that need no progress for m.from_.
        if mt == MsgBeat:
            self._bcast_heartbeat()
            return
        if mt == MsgCheckQuorum:
            if not self.prs.quorum_active():
                self.logger.warning(f"{self.id} stepped down to follower since quorum is not active")
                self.become_follower(self.term, NONE)
            # Everyone but us is inactive until heard from again.
            for vid, pr in self.prs.progress.items():
                if vid != self.id:
                    pr.recent_active = False
            return
        if mt == MsgProp:
            self._leader_propose(m)
            return
        if mt == MsgReadIndex:
            if self.prs.is_singleton():
                resp = self._response_to_read_index_req(m, self.raft_log.committed)
                if resp is not None:
                    self._send(resp)
                return
            # A new leader answers reads only after committing an entry of its term:
            # before that, its commit index may be behind (thesis §6.4).
            if not self.committed_entry_in_current_term():
                self.pending_read_index_messages.append(m)
                return
            self._send_read_index_response(m)
            return

        known = self.prs.progress.get(m.from_)
        if known is None:
            self.logger.debug(f"{self.id} no progress available for {m.from_}")
            return
        pr = known
        if mt == MsgAppResp:
            self._handle_append_response(m, pr)
        elif mt == MsgHeartbeatResp:
            pr.recent_active = True
            pr.probe_sent = False
            # An empty append lets a paused or probing follower recover even when
            # every earlier MsgApp was lost: with a full window of lost MsgApps no
            # ack would ever come to free it, so it goes through the full window
            # too; its ack or rejection frees the window (etcd does the same).
            if pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
                self._maybe_send_append(m.from_, True, unthrottle=True)
            if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
                return
            self.read_only.recv_ack(m.from_, m.context)
            for rs in self.read_only.maybe_advance(self.prs.config.voters):
                resp = self._response_to_read_index_req(rs.req, rs.index)
                if resp is not None:
                    self._send(resp)
        elif mt == MsgSnapStatus:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if not m.reject:
                pr.become_probe()
                self.logger.debug(f"{self.id} snapshot succeeded, resumed sending replication messages to {m.from_} [{pr}]")
            else:
                # Clear pending_snapshot first, or we would probe from the index of a
                # snapshot that never applied.
                pr.pending_snapshot = 0
                pr.become_probe()
                self.logger.debug(f"{self.id} snapshot failed, resumed sending replication messages to {m.from_} [{pr}]")
            # Wait for the follower's MsgAppResp (or a heartbeat interval after a
            # failure) before the next MsgApp.
            pr.probe_sent = True
        elif mt == MsgUnreachable:
            # During optimistic replication an unreachable follower has likely lost
            # a MsgApp: fall back to probing.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self.logger.debug(f"{self.id} failed to send message to {m.from_} because it is unreachable [{pr}]")
        elif mt == MsgTransferLeader:
            self._leader_transfer(m, pr)

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError(f"{self.id} stepped empty MsgProp")
        if self.id not in self.prs.progress:
            # Removed from the configuration while leading: drop new proposals.
            raise ProposalDroppedError(f"raft {self.id} was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(
                f"raft {self.id} is transferring leadership to {self.lead_transferee}; proposal dropped")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            if e.type == EntryNormal:
                continue
            cc: ConfChange | ConfChangeV2
            if e.type == EntryConfChange:
                cc = ConfChange.FromString(e.data)
            else:
                cc = ConfChangeV2.FromString(e.data)
            v2 = confchange.to_v2(cc)
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = self.prs.config.voters.is_joint
            wants_leave_joint = len(v2.changes) == 0
            failed = ""
            if already_pending:
                failed = (f"possible unapplied conf change at index {self.pending_conf_index} "
                          f"(applied to {self.raft_log.applied})")
            elif already_joint and not wants_leave_joint:
                failed = "must transition out of joint config first"
            elif not already_joint and wants_leave_joint:
                failed = "not in joint state; refusing empty conf change"
            if failed:
                self.logger.info(f"{self.id} ignoring conf change {v2} at config {self.prs.config}: {failed}")
                # Replaced by an empty normal entry, keeping indexes as proposed.
                ents[i] = Entry(type=EntryNormal)
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self._append_entry(ents):
            raise ProposalDroppedError(
                f"raft {self.id}: uncommitted log size limit reached ({self.max_uncommitted_size} bytes); proposal dropped")
        self.bcast_pending = True

    def _append_entry(self, ents: list[Entry]) -> bool:
        log = self.raft_log
        li = log.last_index()
        term = self.term
        for i, e in enumerate(ents, li + 1):
            e.term = term
            e.index = i
        if self.max_uncommitted_size < NO_LIMIT and not self._increase_uncommitted_size(ents):
            self.logger.warning(
                f"{self.id} appending new entries to log would exceed uncommitted entry size limit; dropping proposal")
            return False
        li = log.append(ents)
        # Self-ack once persisted (held in msgs_after_append until advance()).
        self._send(Message(type=MsgAppResp, to=self.id, index=li))
        return True

    def _increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        s = _payload_size(ents)
        # An empty uncommitted tail accepts any proposal; empty entries always pass
        # (the new leader's entry, leaving a joint config).
        if self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > self.max_uncommitted_size:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, ents: list[Entry]) -> None:
        if self.max_uncommitted_size >= NO_LIMIT or not self.uncommitted_size:
            return
        s = _payload_size(ents)
        # Saturate at 0: the estimate may undercount, never overcount.
        self.uncommitted_size = 0 if s > self.uncommitted_size else self.uncommitted_size - s

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        log = self.raft_log
        if m.reject:
            # Fast log rejection (§5.3, etcd): reject_hint is the follower's guess of
            # the last index where logs may match, log_term its term there; skip
            # every index of ours with a larger term in one round trip.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                self.logger.debug(f"{self.id} decreased progress of {m.from_} to [{pr}]")
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        old_paused = pr.is_paused()
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= log.first_index():
                # The follower caught up enough to continue from the log.
                self.logger.debug(
                    f"{self.id} recovered from needing snapshot, resumed sending replication messages to {m.from_} [{pr}]")
                pr.become_probe()
                pr.become_replicate()
            elif pr.state == ProgressState.REPLICATE:
                pr.inflights.free_le(m.index)
            if self.maybe_commit():
                # The commit index moved in our term: pending reads may be answered.
                self._release_pending_read_index_messages()
                self.bcast_append()
            elif old_paused and m.from_ != self.id:
                # The follower was paused; it may take more now.
                self._send_append(m.from_)
            if m.from_ != self.id:
                # Flow control may allow several (size-limited) messages now.
                while self._maybe_send_append(m.from_, False):
                    pass
                if m.from_ == self.lead_transferee and pr.match == log.last_index():
                    self.logger.info(f"{self.id} sent MsgTimeoutNow to {m.from_} after received MsgAppResp")
                    self._send_timeout_now(m.from_)

    def _leader_transfer(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            self.logger.debug(f"{self.id} is learner. Ignored transferring leadership")
            return
        transferee = m.from_
        last = self.lead_transferee
        if last != NONE:
            if last == transferee:
                self.logger.info(
                    f"{self.id} [term {self.term}] transfer leadership to {transferee} is in progress, "
                    f"ignores request to same node {transferee}")
                return
            self._abort_leader_transfer()
            self.logger.info(f"{self.id} [term {self.term}] abort previous transferring leadership to {last}")
        if transferee == self.id:
            self.logger.debug(f"{self.id} is already leader. Ignored transferring leadership to self")
            return
        self.logger.info(f"{self.id} [term {self.term}] starts to transfer leadership to {transferee}")
        # The transfer must finish within an election timeout (thesis §3.10).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
            self.logger.info(
                f"{self.id} sends MsgTimeoutNow to {transferee} immediately as {transferee} already has up-to-date log")
        else:
            self._send_append(transferee)

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # -- ReadIndex ----------------------------------------------------------------------------
    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.SAFE:
            self.read_only.add_request(self.raft_log.committed, m)
            # The leader acknowledges its own request; the heartbeat carries the
            # request's position, not its context (see read_only.py).
            self.read_only.recv_ack(self.id, self.read_only.heartbeat_ctx())
            self._bcast_heartbeat()
        else:
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self._send(resp)

    def _response_to_read_index_req(self, req: Message, read_index: int) -> Message | None:
        if req.from_ == NONE or req.from_ == self.id:
            self.read_states.append(ReadState(index=read_index, request_ctx=req.entries[0].data))
            return None
        return Message(type=MsgReadIndexResp, to=req.from_, index=read_index, entries=list(req.entries))

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        if not self.committed_entry_in_current_term():
            return
        msgs = self.pending_read_index_messages
        self.pending_read_index_messages = []
        for m in msgs:
            self._send_read_index_response(m)

    # -- candidate -------------------------------------------------------------------------------
    def _step_candidate(self, m: Message) -> None:
        mt = m.type
        # Only responses to our current candidacy count: a candidate may still get
        # stale MsgPreVoteResps of this term from its pre-candidate phase.
        my_resp = MsgPreVoteResp if self.state == StateType.PRE_CANDIDATE else MsgVoteResp
        if mt == MsgProp:
            raise ProposalDroppedError(f"raft {self.id}: no leader at term {self.term}; proposal dropped")
        if mt == MsgApp:
            self.become_follower(m.term, m.from_)  # m.term == self.term here
            self._handle_append_entries(m)
        elif mt == MsgHeartbeat:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif mt == MsgSnap:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif mt == my_resp:
            gr, rj, res = self._poll(m.from_, not m.reject)
            self.logger.info(
                f"{self.id} has received {gr} {_mt_name(mt)} votes and {rj} vote rejections")
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == VoteResult.LOST:
                # A pre-vote rejection may carry a future term; keep ours.
                self.become_follower(self.term, NONE)
        elif mt == MsgTimeoutNow:
            self.logger.debug(f"{self.id} [term {self.term} state {self.state}] ignored MsgTimeoutNow from {m.from_}")

    # -- follower --------------------------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        mt = m.type
        if mt == MsgProp:
            if self.lead == NONE:
                raise ProposalDroppedError(f"raft {self.id}: no leader at term {self.term}; proposal dropped")
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError(
                    f"raft {self.id}: not leader ({self.lead} is) and proposal forwarding is disabled")
            m.to = self.lead
            self._send(m)
        elif mt == MsgApp:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif mt == MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif mt == MsgSnap:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif mt == MsgTransferLeader:
            if self.lead == NONE:
                self.logger.info(f"{self.id} no leader at term {self.term}; dropping leader transfer msg")
                return
            m.to = self.lead
            self._send(m)
        elif mt == MsgTimeoutNow:
            self.logger.info(
                f"{self.id} [term {self.term}] received MsgTimeoutNow from {m.from_} and starts an election to get leadership")
            # Transfers skip PreVote: the cluster is healthy, no need for the round.
            self._hup(CAMPAIGN_TRANSFER)
        elif mt == MsgReadIndex:
            if self.lead == NONE:
                self.logger.info(f"{self.id} no leader at term {self.term}; dropping index reading msg")
                return
            m.to = self.lead
            self._send(m)
        elif mt == MsgReadIndexResp:
            if len(m.entries) != 1:
                self.logger.error(f"{self.id} invalid format of MsgReadIndexResp from {m.from_}, entries count: {len(m.entries)}")
                return
            self.read_states.append(ReadState(index=m.index, request_ctx=m.entries[0].data))

    def _handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            self._send(Message(type=MsgAppResp, to=m.from_, index=log.committed))
            return
        ents = list(m.entries)
        last_new = log.maybe_append(m.index, m.log_term, m.commit, ents)
        if last_new is not None:
            self._send(Message(type=MsgAppResp, to=m.from_, index=last_new))
            return
        # Mismatch: hint the largest (index, term) with term <= m.log_term at or below
        # m.index, so the leader skips our divergent tail in one round trip.
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        self.logger.debug(
            f"{self.id} [logterm: {log.term_or_zero(m.index)}, index: {m.index}] rejected MsgApp "
            f"[logterm: {m.log_term}, index: {m.index}] from {m.from_}")
        self._send(Message(type=MsgAppResp, to=m.from_, index=m.index, reject=True,
                           reject_hint=hint_index, log_term=hint_term))

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self._send(Message(type=MsgHeartbeatResp, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        s = m.snapshot
        sindex, sterm = s.metadata.index, s.metadata.term
        if self._restore(s):
            self.logger.info(
                f"{self.id} [commit: {self.raft_log.committed}] restored snapshot [index: {sindex}, term: {sterm}]")
            self._send(Message(type=MsgAppResp, to=m.from_, index=self.raft_log.last_index()))
        else:
            self.logger.info(
                f"{self.id} [commit: {self.raft_log.committed}] ignored snapshot [index: {sindex}, term: {sterm}]")
            self._send(Message(type=MsgAppResp, to=m.from_, index=self.raft_log.committed))

    def _restore(self, s: Snapshot) -> bool:
        """Install a snapshot from the leader; False when it is not newer than what
        we have committed."""
        md = s.metadata
        if md.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Defense in depth: never restore as leader/candidate.
            self.logger.warning(f"{self.id} attempted to restore snapshot as leader; should never happen")
            self.become_follower(self.term + 1, NONE)
            return False
        cs = md.conf_state
        if self.id not in cs.voters and self.id not in cs.learners and self.id not in cs.voters_outgoing:
            self.logger.warning(
                f"{self.id} attempted to restore snapshot but it is not in the ConfState {cs}; should never happen")
            return False
        if self.raft_log.match_term(md.index, md.term):
            # We already have the entry: just fast-forward the commit index.
            self.logger.info(
                f"{self.id} [commit: {self.raft_log.committed}, lastindex: {self.raft_log.last_index()}] "
                f"fast-forwarded commit to snapshot [index: {md.index}, term: {md.term}]")
            self.raft_log.commit_to(md.index)
            return False
        if self._has_conf_changes(self.raft_log.applying):
            # Conf changes were handed to the application (a Ready's committed entries)
            # and are not applied yet. The application applies them after this step
            # returns — on top of the snapshot's configuration, which already includes
            # them and perhaps later ones (etcd-io/etcd#11510): a demoted, revived or
            # missing voter, or "removed all voters". Ignore the snapshot; the leader
            # sends it again, and it is restored once they are applied (advance()).
            self.logger.info(
                f"{self.id} [applied: {self.raft_log.applied}, applying: {self.raft_log.applying}] ignored "
                f"snapshot [index: {md.index}, term: {md.term}] while conf changes are being applied")
            return False
        snap = Snapshot()
        snap.CopyFrom(s)
        self.raft_log.restore(snap)
        # Rebuild the configuration from the snapshot's ConfState.
        self.prs = ProgressTracker(self.prs.max_inflight, self.prs.max_inflight_bytes)
        cfg, prs = confchange.restore(self.prs, self.raft_log.last_index(), cs)
        _assert_conf_states_equivalent(cs, self._switch_to_config(cfg, prs))
        return True

    # -- ticks -----------------------------------------------------------------------------------
    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(type=MsgHup, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MsgCheckQuorum, from_=self.id))
            # A transfer that did not finish within an election timeout is aborted.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self._abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MsgBeat, from_=self.id))

    # -- configuration ---------------------------------------------------------------------------
    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        cfg, prs = self.changed_config(cc)
        return self._switch_to_config(cfg, prs)

    def changed_config(self, cc: ConfChangeV2) -> tuple[TrackerConfig, dict[int, Progress]]:
        """The configuration `cc` would switch to; ConfChangeError if it cannot apply.
        Changes nothing (confchange works on copies)."""
        changer = confchange.Changer(self.prs, self.raft_log.last_index())
        if confchange.is_leave_joint(cc):
            return changer.leave_joint()
        auto_leave, joint = confchange.enter_joint_of(cc)
        if joint:
            return changer.enter_joint(auto_leave, list(cc.changes))
        return changer.simple(list(cc.changes))

    def _switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        self.prs.set(cfg, prs)
        self.logger.info(f"{self.id} switched to configuration {cfg}")
        cs = self.prs.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            # Removed or demoted while leading (zero transfers leadership first; this is
            # the fallback). As etcd, step down only if asked to: otherwise keep leading,
            # heartbeats carrying the commit of this very change, until the application
            # stops this node (see Config.step_down_on_removal).
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            # The new config may commit more: tell everyone.
            self.bcast_append()
        else:
            # Probe newly added peers right away instead of after a heartbeat.
            for vid in self.prs.progress:
                if vid != self.id:
                    self._maybe_send_append(vid, False)
        if self.lead_transferee != NONE and self.lead_transferee not in cfg.voters.ids():
            self._abort_leader_transfer()
        return cs

    def applied_to(self, index: int) -> None:
        old = self.raft_log.applied
        new = max(index, old)
        self.raft_log.applied_to(new)
        if self.prs.config.auto_leave and new >= self.pending_conf_index and self.state == StateType.LEADER:
            # Leave the joint config automatically (an empty ConfChangeV2; its empty
            # data can never be refused by the size limit). A transfer in progress
            # may drop it; it is retried on the next apply.
            m = Message(type=MsgProp, from_=self.id, entries=[Entry(type=EntryConfChangeV2, data=b"")])
            try:
                self.step(m)
                self.logger.info(f"{self.id} initiating automatic transition out of joint configuration {self.prs.config}")
            except ProposalDroppedError as e:
                self.logger.debug(f"not initiating automatic transition out of joint configuration: {e}")


def _assert_conf_states_equivalent(a: ConfState, b: ConfState) -> None:
    def norm(cs: ConfState) -> tuple[list[int], list[int], list[int], list[int], bool]:
        return (sorted(cs.voters), sorted(cs.learners), sorted(cs.voters_outgoing),
                sorted(cs.learners_next), cs.auto_leave)

    if norm(a) != norm(b):
        raise ConfChangeError(f"ConfStates not equivalent after sorting:\n{a}\n{b}")


def _mt_name(t: int) -> str:
    from .raftpb import MessageType
    return MessageType.Name(t)
