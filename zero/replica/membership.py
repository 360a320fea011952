"""Zero membership: joining, promotion, removal and leadership transfer.

Joining is done as a *learner first, promoted once caught up* (Raft thesis §4.2.1;
etcd's learner mode):

- Adding a voter immediately changes the quorum before the new zero has a single
  entry. Growing 1 -> 2 voters makes both necessary: if the joiner never comes up (a
  wrong address, a crash, a firewall) the cluster has no live quorum and every write
  stops until an operator intervenes. A learner changes no quorum, so a join can never
  cost availability, however it fails.
- The leader promotes a learner (ConfChangeAddNode on an existing learner) only when it
  is caught up (replicating, at most PROMOTE_LAG entries behind the commit index) and
  alive, and has stayed so without a break for `promote_after` seconds (a joiner that
  comes up, catches up and dies a moment later is never promoted), and only if the
  voters that are alive after the promotion still form a quorum of the new, larger
  configuration. A catching-up member therefore never holds up
  commits; the promotion duty runs on whichever zero leads, so a leader change in the
  middle of a join only delays it.

One conf change at a time: Raft replaces a conf change proposed while another is
unapplied by an empty entry (etcd semantics), which is how Dgraph lost one of two
concurrent joins. Here every conf change goes through `ConfChanger`: a lock serializes
them on the leader, each waits until the previous one is applied before it is proposed,
and one that is still replaced (a leader change) is detected by its index and proposed
again with the same dedup key — never silently lost.

Every conf change carries its ZeroState change (AddZero/RemoveZero) in its context, so
Raft's configuration and `state.zeros` change at the same index. Because Raft applies the
configuration part even when the state part is refused, each change is first dry-run
against a copy of the state; a refusal is reported before anything is proposed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import grpc

from raftcore import StateType, Status, raftpb

from zero.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    ZeroError,
)
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.pb import state_pb2, zero_pb2
from zero.state.machine import Applied, ZeroState
from zero.replica.transport import Transport
from zero.state.versions import ZERO_VERSION

__all__ = ["Membership", "MembershipHost", "ConfChangeDroppedError", "join_cluster", "PROMOTE_LAG", "ready_learners"]

PROMOTE_LAG = 64  # a learner at most this many entries behind the commit index is caught up
PROMOTE_AFTER_MIN = 1.0  # seconds a learner stays caught up and live before its promotion, at least
PROMOTE_AFTER_TIMEOUTS = 2  # ... and at least this many election timeouts
_STATUS_ERRORS: dict[grpc.StatusCode, type[ZeroError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
}


class ConfChangeDroppedError(UnavailableError):
    """The conf change's log slot was taken by another entry (replaced by Raft, or
    overwritten after a leader change): it did not happen, and may be proposed again."""


class _Timing(Protocol):
    tick_seconds: float
    election_ticks: int
    my_addr: str


class MembershipHost(Protocol):
    """What membership sees of its zero (ZeroNode implements it): identity, status,
    reads, conf-change proposals and leadership transfer, all through public methods."""

    raft_id: int
    log: Any
    removed: asyncio.Event

    @property
    def opts(self) -> _Timing: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> int: ...
    @property
    def applied(self) -> int: ...
    def raft_status(self) -> Status: ...
    def new_key(self) -> str: ...
    async def read_barrier(self, *, timeout: float | None = None) -> None: ...
    async def propose_conf_change(self, cc: raftpb.ConfChange, proposal: state_pb2.Proposal, *,
                                  timeout: float | None = None) -> Applied: ...
    def conf_change_pending(self) -> bool: ...
    def check_conf_change(self, cc: raftpb.ConfChange) -> None: ...
    async def request_transfer(self, to: int) -> None: ...


def ready_learners(learners: Iterable[int], ready: Callable[[int], bool], since: dict[int, float],
                   now: float, promote_after: float) -> list[int]:
    """The learners that have been `ready` (caught up and live) without a break for
    `promote_after` seconds at `now`, in id order. `since` maps each ready learner to
    when its current ready stretch began; it is updated in place (a learner that is not
    ready, or no longer a learner, is dropped and starts over)."""
    current = set(learners)
    for rid in list(since):
        if rid not in current:
            del since[rid]
    out = []
    for rid in sorted(current):
        if not ready(rid):
            since.pop(rid, None)
            continue
        start = since.setdefault(rid, now)
        if now - start >= promote_after:
            out.append(rid)
    return out


class Membership:
    """The membership logic of one ZeroNode (leader-side decisions live here)."""

    def __init__(self, node: MembershipHost) -> None:
        self.node = node
        self.lock = asyncio.Lock()
        self._ready_since: dict[int, float] = {}  # learner -> when it last became caught up and live

    @property
    def promote_after(self) -> float:
        """Seconds a learner must stay caught up and live before it is promoted."""
        return max(PROMOTE_AFTER_MIN, PROMOTE_AFTER_TIMEOUTS * self._election_timeout())

    # -- liveness ---------------------------------------------------------------------------
    def _election_timeout(self) -> float:
        o = self.node.opts
        return o.tick_seconds * o.election_ticks

    def is_live(self, rid: int, progress: dict[int, Any]) -> bool:
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
        return node.transport.heard_within(rid, self._election_timeout())

    def _require_leader(self, what: str) -> None:
        node = self.node
        if not node.is_leader:
            lead = node.leader_id
            raise UnavailableError(f"{what} must run on the leader; this zero ({node.raft_id}) is not "
                                   f"the leader" + (f" (zero {lead} is)" if lead else " and knows none"))

    # -- one conf change at a time -------------------------------------------------------------
    async def conf_change(self, cc: raftpb.ConfChange, proposal: state_pb2.Proposal, *,
                          timeout: float = 10.0) -> Applied:
        """Propose `cc` (carrying `proposal`) on this leader and wait for its apply,
        retrying while it is dropped or replaced. The caller holds `self.lock`."""
        node = self.node
        self._dry_run(proposal)
        if not proposal.key:
            proposal.key = node.new_key()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._require_leader("a membership change")
            # Raft refuses a conf change while another is unapplied (pending_conf_index
            # > applied, also right after an election): wait for it here.
            while node.conf_change_pending():
                if loop.time() > deadline:
                    raise UnavailableError("an earlier membership change is still being applied; retry")
                await asyncio.sleep(node.opts.tick_seconds / 2)
                self._require_leader("a membership change")
            node.check_conf_change(cc)
            c = raftpb.ConfChange()
            c.CopyFrom(cc)
            try:
                return await node.propose_conf_change(c, proposal, timeout=max(0.1, deadline - loop.time()))
            except ConfChangeDroppedError as e:
                node.log.info("membership change was replaced in the log; proposing it again", error=str(e))
            except UnavailableError:
                if loop.time() > deadline:
                    raise
            if loop.time() > deadline:
                raise UnavailableError("membership change not applied in time; retry")
            await asyncio.sleep(node.opts.tick_seconds / 2)

    def _dry_run(self, proposal: state_pb2.Proposal) -> None:
        """Raise what apply() would raise, without touching the real state."""
        node = self.node
        copy = ZeroState.restore(node.state.snapshot())
        p = state_pb2.Proposal()
        p.CopyFrom(proposal)
        p.key = ""
        copy.apply(max(node.applied, 0) + 1, p)

    # -- joining ---------------------------------------------------------------------------------
    async def handle_join(self, req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse:
        """JoinCluster on the leader: add the caller as a learner (assigning a raft id
        when it asks for 0) and answer with its id, the cluster id and every zero."""
        node = self.node
        self._require_leader("JoinCluster")
        if req.protocol != tpb.RAFT_PROTOCOL_V1:
            raise FailedPreconditionError(f"peer protocol {req.protocol} is not supported")
        if req.learner:
            raise InvalidArgumentError("permanent learner zeros are not supported; join without learner")
        if not req.addr:
            raise InvalidArgumentError("JoinCluster needs the joiner's address")
        async with self.lock:
            self._require_leader("JoinCluster")
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
            await self.conf_change(cc, p)
            return self._join_answer(rid)

    def _join_answer(self, rid: int) -> tpb.JoinClusterResponse:
        node = self.node
        st = node.raft_status()
        learners = set(st.learners)
        resp = tpb.JoinClusterResponse(raft_id=rid, cluster_id=node.state.cluster_id)
        for zid, z in sorted(node.state.zeros.items()):
            resp.peers.append(zero_pb2.Member(id=zid, addr=z.addr, learner=zid in learners, leader=zid == node.raft_id))
        return resp

    async def promote_learners(self) -> None:
        """Leader duty: promote each caught-up, live learner that is a zero member."""
        node = self.node
        period = max(node.opts.tick_seconds, 0.02)
        loop = asyncio.get_running_loop()
        self._ready_since.clear()  # a stretch observed under an earlier term does not count
        while True:
            await asyncio.sleep(period)
            if not node.is_leader or not node.raft_status().learners:
                self._ready_since.clear()
                continue
            async with self.lock:
                st = node.raft_status()
                if st.raft_state != StateType.LEADER:
                    continue
                zeros = node.state.zeros

                def caught_up(rid: int) -> bool:
                    pr = st.progress.get(rid)
                    return (rid in zeros and pr is not None and pr.state == "REPLICATE"
                            and st.commit - pr.match <= PROMOTE_LAG and self.is_live(rid, st.progress))

                for rid in ready_learners(st.learners, caught_up, self._ready_since, loop.time(),
                                          self.promote_after):
                    pr = st.progress[rid]
                    voters = set(st.voters) | {rid}
                    live = sum(1 for v in voters if self.is_live(v, st.progress))
                    if live < len(voters) // 2 + 1:
                        continue  # promoting now would leave the cluster without a live quorum
                    node.log.info("promoting a caught-up learner to voter", raft_id=rid, match=pr.match,
                                  commit=st.commit)
                    cc = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=rid)
                    p = state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=zeros[rid].addr))
                    await self.conf_change(cc, p)
                    break  # re-read the status before the next one

    # -- removal ---------------------------------------------------------------------------------
    async def remove_zero(self, rid: int, *, timeout: float = 10.0) -> zero_pb2.Member:
        """Remove zero `rid` by conf change. Refused (FailedPreconditionError) for the
        last zero or when the remaining live voters would not form a quorum; a leader
        asked to remove itself hands leadership over first and the new leader removes it."""
        node = self.node
        state = node.state
        if state.is_removed(rid, zero=True):
            raise FailedPreconditionError(f"zero {rid} was already removed")
        self._require_leader("RemoveNode")
        async with self.lock:
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
                applied = await self.conf_change(cc, p, timeout=timeout)
                member = applied.member
                assert member is not None
                return member
            self._dry_run(p)
        # Removing ourselves: hand leadership to the best voter, then let it remove us.
        new = await self.transfer_leadership(0)
        node.log.info("removing this zero through the new leader", raft_id=rid, leader=new)
        return await self._removed_by_leader(cc, p, timeout)

    async def _removed_by_leader(self, cc: raftpb.ConfChange, p: state_pb2.Proposal,
                                 timeout: float) -> zero_pb2.Member:
        """Propose our own removal as a follower (Raft forwards it to the leader) until
        it is applied or we are told we were removed."""
        node = self.node
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        p.key = node.new_key()
        me = zero_pb2.Member(id=node.raft_id, addr=node.opts.my_addr)
        while loop.time() < deadline:
            if node.removed.is_set():
                return me
            c = raftpb.ConfChange()
            c.CopyFrom(cc)
            attempt = asyncio.ensure_future(node.propose_conf_change(c, p, timeout=min(1.0, deadline - loop.time())))
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
            await asyncio.sleep(node.opts.tick_seconds)
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
        self._require_leader("TransferLeadership")
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
        loop = asyncio.get_running_loop()
        limit = timeout if timeout is not None else max(2.0, 3 * self._election_timeout())
        deadline = loop.time() + limit
        node.log.info("transferring leadership", to=to)
        await node.request_transfer(to)
        last_ask = loop.time()
        while loop.time() < deadline:
            lead = node.leader_id
            if lead and lead != node.raft_id:
                return lead
            # Raft abandons a transfer after an election timeout; ask again while we lead.
            if node.is_leader and loop.time() - last_ask > self._election_timeout():
                await node.request_transfer(to)
                last_ask = loop.time()
            await asyncio.sleep(min(0.01, node.opts.tick_seconds))
        raise UnavailableError(f"leadership did not move to zero {to} within {limit:.1f}s")


async def join_cluster(peer: str, my_addr: str, raft_id: int, *, timeout: float, logger: Any,
                       credentials: grpc.ChannelCredentials | None = None) -> tpb.JoinClusterResponse:
    """Ask the cluster that `peer` belongs to for membership, following `zero-leader-addr`
    redirects and retrying with jittered backoff until `timeout`; refusals
    (FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND) are raised at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    target = peer
    attempt = 0
    last = ""
    req = tpb.JoinClusterRequest(raft_id=raft_id, addr=my_addr, protocol=tpb.RAFT_PROTOCOL_V1, version=ZERO_VERSION)
    while True:
        channel = (grpc.aio.secure_channel(target, credentials) if credentials is not None
                   else grpc.aio.insecure_channel(target))
        redirect = ""
        try:
            left = deadline - loop.time()
            resp = await tgrpc.RaftStub(channel).JoinCluster(req, timeout=max(0.5, min(15.0, left)))
            logger.info("joined the cluster", via=target, raft_id=resp.raft_id, cluster_id=resp.cluster_id)
            return resp  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code in _STATUS_ERRORS:
                raise _STATUS_ERRORS[code](f"joining through {target}: {e.details()}") from None
            md = dict(e.trailing_metadata() or ())
            redirect = str(md.get("zero-leader-addr", ""))
            last = f"{target}: {code.name} {e.details()}"
        finally:
            await channel.close()
        if loop.time() > deadline:
            raise UnavailableError(f"could not join the cluster through {peer} within {timeout:.0f}s (last: {last})")
        if redirect and redirect != target:
            logger.info("join redirected to the leader", leader=redirect)
            target = redirect
            continue
        attempt += 1
        logger.info("join attempt failed; retrying", error=last, attempt=attempt)
        target = peer if target != peer and attempt % 2 == 0 else target
        await asyncio.sleep(random.uniform(0.05, min(2.0, 0.1 * 2 ** attempt)))
