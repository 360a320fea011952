"""Zero membership: joining, promotion, removal and leadership transfer.

Joining is done as a *learner first, promoted once caught up* (Raft thesis §4.2.1;
etcd's learner mode):

- Adding a voter immediately changes the quorum before the new zero has a single
  entry. Growing 1 -> 2 voters makes both necessary: if the joiner never comes up (a
  wrong address, a crash, a firewall) the cluster has no live quorum and every write
  stops until an operator intervenes. A learner changes no quorum, so a join can never
  cost availability, however it fails.
- The leader promotes a learner once it is caught up and stayed live for a while, and
  only if the live voters still form a quorum afterwards (zero/replica/promotion.py).

Every change goes through one `ConfChanger` (zero/replica/confchange.py): one conf
change at a time, dry-run against a copy of the state first, proposed again when Raft
replaced it — never silently lost. The joiner's side of a join is zero/replica/join.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from raftcore import ProgressStatus, Status, raftpb

from zero.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import state_pb2, zero_pb2
from zero.replica.confchange import CONF_CHANGE_TIMEOUT, ConfChangeHost, ConfChanger
from zero.replica.ports import Clock, PeerTransport
from zero.replica.promotion import Promoter
from zero.state.machine import Applied

__all__ = ["Membership", "MembershipHost", "TRANSFER_MIN", "TRANSFER_TIMEOUTS"]

TRANSFER_MIN = 2.0  # seconds a leadership transfer waits by default, at least
TRANSFER_TIMEOUTS = 3  # ... and at least this many election timeouts


class MembershipHost(ConfChangeHost, Protocol):
    """What membership sees of its zero (ZeroNode implements it): identity, status,
    reads, conf-change proposals and leadership transfer, all through public methods."""

    @property
    def removed(self) -> asyncio.Event: ...
    @property
    def transport(self) -> PeerTransport: ...
    def raft_status(self) -> Status: ...
    async def read_barrier(self, *, timeout: float | None = None) -> None: ...
    async def propose_conf_change(self, cc: raftpb.ConfChange, proposal: state_pb2.Proposal, *,
                                  timeout: float | None = None) -> Applied: ...
    async def request_transfer(self, to: int) -> None: ...


class Membership:
    """The membership logic of one ZeroNode (leader-side decisions live here)."""

    def __init__(self, node: MembershipHost, clock: Clock) -> None:
        self.node = node
        self.clock = clock
        self.changes = ConfChanger(node, clock)
        self.promoter = Promoter(node, self.changes, clock, self.is_live)

    async def promote_learners(self) -> None:
        """Leader duty: promote each caught-up, live learner (zero/replica/promotion.py)."""
        await self.promoter.promote_learners()

    # -- liveness ---------------------------------------------------------------------------
    def is_live(self, rid: int, progress: Mapping[int, ProgressStatus]) -> bool:
        """Heard from within an election timeout (Raft's recent_active, or an admitted
        batch: recent_active is reset at every CheckQuorum round, so alone it would make
        a healthy peer look dead for a moment), and our stream to it is not down."""
        node = self.node
        if rid == node.raft_id:
            return True
        if node.transport.peer_down(rid):
            return False  # our stream to it just failed: don't count on it
        pr = progress.get(rid)
        if pr is not None and pr.recent_active:
            return True
        return node.transport.heard_within(rid, node.opts.election_timeout)

    # -- joining ---------------------------------------------------------------------------------
    async def handle_join(self, req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse:
        """JoinCluster on the leader: add the caller as a learner (assigning a raft id
        when it asks for 0) and answer with its id, the cluster id and every zero."""
        node = self.node
        self.changes.require_leader("JoinCluster")
        if req.protocol != tpb.RAFT_PROTOCOL_V1:
            raise FailedPreconditionError(f"peer protocol {req.protocol} is not supported")
        if req.learner:
            raise InvalidArgumentError("permanent learner zeros are not supported; join without learner")
        if not req.addr:
            raise InvalidArgumentError("JoinCluster needs the joiner's address")
        async with self.changes.lock:
            self.changes.require_leader("JoinCluster")
            await node.read_barrier()  # everything committed before the join is applied here
            state = node.state
            cid = state.cluster_id
            if not cid:
                raise UnavailableError("the cluster has no id yet (its first leader is starting); retry")
            if req.cluster_id and req.cluster_id != cid:
                raise FailedPreconditionError(f"this is cluster {cid}, not {req.cluster_id}")
            if (req.version or 1) < state.cluster_version:  # zero/state/versions.py: no downgrade by joining
                raise FailedPreconditionError(
                    f"the cluster runs version {state.cluster_version}; a zero of version {req.version or 1} "
                    f"could not decode its log: run a newer zero")
            zeros = state.zeros
            if node.raft_id not in zeros:
                # A new cluster's first leader registers itself (AddZero) only after it
                # minted the cluster id (ensure_cluster_identity). Until then next_raft_id
                # may be its own id, and the answer could not name it to the joiner.
                raise UnavailableError(f"zero {node.raft_id} leads but has not registered itself in the "
                                       f"cluster yet (it is starting); retry")
            holder = next((rid for rid, z in zeros.items() if z.addr == req.addr), 0)
            rid = req.raft_id
            st = node.raft_status()
            in_config = set(st.voters) | set(st.learners)
            if holder and rid in (0, holder) and holder in st.learners:
                # A retried join (the joiner did not get our answer, or crashed before
                # saving it): the same id again. Safe only for a learner: it never voted
                # and its acks never counted towards a commit, so an empty log loses nothing.
                node.log.info("join retried; answering with the existing learner", raft_id=holder, addr=req.addr)
                return self._join_answer(holder)
            if holder and holder in st.voters:
                raise FailedPreconditionError(
                    f"address {req.addr} belongs to zero {holder}, a voter; a zero that lost its data "
                    f"directory must be removed (RemoveNode) before it joins again")
            if rid:
                if state.is_removed(rid, zero=True):
                    raise FailedPreconditionError(f"zero {rid} was removed from the cluster; its id is never reused "
                                                  "(join with a fresh data directory and no --raft-id)")
                if rid in zeros or rid in in_config:
                    raise FailedPreconditionError(
                        f"zero {rid} is already a member; a zero that lost its data directory must be "
                        f"removed and join again with a new id")
                if rid < state.next_raft_id:
                    raise FailedPreconditionError(f"raft id {rid} was handed out before; ids are never reused")
            else:
                # Never an id of the Raft configuration, even one the state does not
                # list (yet): AddLearner would demote that voter.
                rid = max(state.next_raft_id, max(in_config, default=0) + 1)
            cc = raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=rid)
            p = state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=req.addr, version=req.version))
            node.log.info("adding a zero as a learner", raft_id=rid, addr=req.addr, version=req.version)
            await self.changes.conf_change(cc, p)
            return self._join_answer(rid)

    def _join_answer(self, rid: int) -> tpb.JoinClusterResponse:
        node = self.node
        st = node.raft_status()
        learners = set(st.learners)
        resp = tpb.JoinClusterResponse(raft_id=rid, cluster_id=node.state.cluster_id)
        for zid, z in sorted(node.state.zeros.items()):
            resp.peers.append(zero_pb2.Member(id=zid, addr=z.addr, learner=zid in learners, leader=zid == node.raft_id))
        return resp

    # -- removal ---------------------------------------------------------------------------------
    async def remove_zero(self, rid: int, *, timeout: float = CONF_CHANGE_TIMEOUT) -> zero_pb2.Member:
        """Remove zero `rid` by conf change. Refused (FailedPreconditionError) for the
        last zero or when the remaining live voters would not form a quorum; a leader
        asked to remove itself hands leadership over first and the new leader removes it."""
        node = self.node
        state = node.state
        if state.is_removed(rid, zero=True):
            raise FailedPreconditionError(f"zero {rid} was already removed")
        self.changes.require_leader("RemoveNode")
        async with self.changes.lock:
            await node.read_barrier()
            state = node.state
            zeros = state.zeros
            if rid not in zeros:
                raise NotFoundError(f"zero {rid} is not a member of the cluster")
            if len(zeros) == 1:
                raise FailedPreconditionError(f"zero {rid} is the last zero; it cannot be removed")
            st = node.raft_status()
            voters = set(st.voters)
            remaining = voters - {rid}
            if voters and not remaining:
                raise FailedPreconditionError(f"zero {rid} is the last voter; it cannot be removed")
            live = [v for v in remaining if self.is_live(v, st.progress)]
            if len(live) < len(remaining) // 2 + 1:
                raise FailedPreconditionError(
                    f"removing zero {rid} would leave {len(remaining)} voters of which only {len(live)} "
                    f"({sorted(live)}) are live: no quorum; bring zeros back first")
            p = state_pb2.Proposal(remove_zero=state_pb2.RemoveZero(raft_id=rid))
            cc = raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=rid)
            if rid != node.raft_id:
                node.log.info("removing a zero", raft_id=rid)
                applied = await self.changes.conf_change(cc, p, timeout=timeout)
                member = applied.member
                assert member is not None
                return member
            self.changes.dry_run(p)
        # Removing ourselves: hand leadership to the best voter, then let it remove us.
        new = await self.transfer_leadership(0)
        node.log.info("removing this zero through the new leader", raft_id=rid, leader=new)
        return await self._removed_by_leader(cc, p, timeout)

    async def _removed_by_leader(self, cc: raftpb.ConfChange, p: state_pb2.Proposal,
                                 timeout: float) -> zero_pb2.Member:
        """Propose our own removal as a follower (Raft forwards it to the leader) until
        it is applied or we are told we were removed."""
        node = self.node
        clock = self.clock
        deadline = clock.monotonic() + timeout
        p.key = node.new_key()
        me = zero_pb2.Member(id=node.raft_id, addr=node.opts.my_addr)
        while clock.monotonic() < deadline:
            if node.removed.is_set():
                return me
            c = raftpb.ConfChange()
            c.CopyFrom(cc)
            attempt = asyncio.ensure_future(node.propose_conf_change(c, p, timeout=min(1.0, deadline - clock.monotonic())))
            attempt.add_done_callback(lambda f: f.cancelled() or f.exception())  # outcome read below or moot
            removed = asyncio.ensure_future(node.removed.wait())
            await asyncio.wait({attempt, removed}, return_when=asyncio.FIRST_COMPLETED)
            removed.cancel()
            if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
                return attempt.result().member or me
            if not attempt.done():
                attempt.cancel()
            else:
                attempt.exception()  # retrieved: a timeout or a drop, retried below
            if node.removed.is_set():
                return me
            await clock.sleep(node.opts.tick_seconds)
        raise UnavailableError("leadership was handed over but the new leader did not remove this zero in time; "
                               "retry on the new leader")

    # -- leadership ------------------------------------------------------------------------------
    def best_transferee(self) -> int:
        """The live voter (not us) with the most of the log, 0 if there is none."""
        node = self.node
        st = node.raft_status()
        best, best_match = 0, -1
        for v in st.voters:
            if v == node.raft_id or not self.is_live(v, st.progress):
                continue
            pr = st.progress.get(v)
            match = pr.match if pr is not None else 0
            if match > best_match:
                best, best_match = v, match
        return best

    async def transfer_leadership(self, to: int = 0, *, timeout: float | None = None) -> int:
        """Hand leadership to voter `to` (0: the most up-to-date live voter) and wait
        until another zero leads; returns the new leader's id."""
        node = self.node
        self.changes.require_leader("TransferLeadership")
        st = node.raft_status()
        others = [v for v in st.voters if v != node.raft_id]
        if not others:
            raise FailedPreconditionError("there is no other voter to hand leadership to")
        if to:
            if to == node.raft_id:
                return to
            if to not in others:
                raise NotFoundError(f"zero {to} is not a voter of this cluster (voters: {sorted(st.voters)})")
        else:
            to = self.best_transferee()
            if not to:
                raise UnavailableError("no other voter is live; leadership cannot be handed over")
        clock = self.clock
        election_timeout = node.opts.election_timeout
        limit = timeout if timeout is not None else max(TRANSFER_MIN, TRANSFER_TIMEOUTS * election_timeout)
        deadline = clock.monotonic() + limit
        node.log.info("transferring leadership", to=to)
        await node.request_transfer(to)
        last_ask = clock.monotonic()
        while clock.monotonic() < deadline:
            lead = node.leader_id
            if lead and lead != node.raft_id:
                return lead
            # Raft abandons a transfer after an election timeout; ask again while we lead.
            if node.is_leader and clock.monotonic() - last_ask > election_timeout:
                await node.request_transfer(to)
                last_ask = clock.monotonic()
            await clock.sleep(min(0.01, node.opts.tick_seconds))
        raise UnavailableError(f"leadership did not move to zero {to} within {limit:.1f}s")

