"""ZeroAdmin, the operator API (SPEC "gRPC"; `zero admin` calls it): removing members
and zeros, tablet moves and the rebalancer, leadership transfer, snapshots, Raft status
and backups; placement (the policy, group sizes, drains, explanations, DeleteTablet,
BumpLease) in zero/frontdoor/placement_admin.py.

The interceptor (zero/frontdoor/interceptor.py) has checked the admin token (and with
TLS the caller's role) and forwarded the call to the leader, except RaftStatus, which
every zero answers for itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from zero.errors import InvalidArgumentError, UnavailableError, UnimplementedError
from zero.ops import backup
from zero.leader.backoff import Backoff
from zero.leader.leases import Leases
from zero.leader.oracle import Oracle
from zero.leader.placement import PlacementDuty
from zero.pb import state_pb2, zero_pb2, zero_pb2_grpc
from zero.replica.node import ZeroNode
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.moves_admin import MoveControl, MovesAdmin
from zero.frontdoor.placement_admin import PlacementAdmin
from zero.frontdoor.wire import Context
from zero.frontdoor.zero_service import require_leader

__all__ = ["ZeroAdminService", "MoveRunner"]


class MoveRunner(MoveControl, Protocol):
    """What ZeroAdmin needs of the move driver (zero/leader's MoveDriver)."""

    backoff: Backoff
    leases: Leases

    async def rebalance_now(self) -> list[int]: ...


class ZeroAdminService(PlacementAdmin, MovesAdmin, zero_pb2_grpc.ZeroAdminServicer):
    """Authorised by the Interceptor (admin token) before any method runs. The placement
    methods are PlacementAdmin's (zero/frontdoor/placement_admin.py), the move methods
    MovesAdmin's (zero/frontdoor/moves_admin.py)."""

    moves: MoveRunner | None  # None: moves and the rebalancer are not offered

    def __init__(self, node: ZeroNode, liveness: Liveness, moves: MoveRunner | None = None,
                 oracle: Oracle | None = None) -> None:
        self.node = node
        self.liveness = liveness
        self.moves = moves  # None: moves and the rebalancer are not offered
        self.oracle = oracle
        self.placement_mover = moves
        self.placement_duty = PlacementDuty(node, moves, liveness) if moves is not None else None

    async def RemoveNode(self, request: zero_pb2.RemoveNodeRequest, context: Context) -> zero_pb2.RemoveNodeResponse:
        if not request.node_id:
            raise InvalidArgumentError("node_id is 0; name the member to remove")
        if request.group_id == 0:
            # A zero peer: a Raft membership change (refused for the last zero or when
            # it would leave no live quorum; a leader hands leadership over first).
            member = await self.node.remove_zero(request.node_id)
            return zero_pb2.RemoveNodeResponse(removed=member, version=self.node.state.version)
        applied = await self.node.propose(state_pb2.Proposal(
            remove_member=state_pb2.RemoveMember(node_id=request.node_id, group_id=request.group_id)))
        self.liveness.forget(request.node_id)
        return zero_pb2.RemoveNodeResponse(removed=applied.member, version=applied.version)

    async def TransferLeadership(self, request: zero_pb2.TransferLeadershipRequest,
                                 context: Context) -> zero_pb2.TransferLeadershipResponse:
        leader = await self.node.transfer_leadership(to=request.transferee)
        return zero_pb2.TransferLeadershipResponse(leader_id=leader)

    async def Snapshot(self, request: zero_pb2.SnapshotRequest, context: Context) -> zero_pb2.SnapshotResponse:
        index = await self.node.take_snapshot()
        term = size = 0
        if index:
            snap = self.node.stored_snapshot()
            term, size = snap.metadata.term, len(snap.data)
        return zero_pb2.SnapshotResponse(index=index, term=term, size_bytes=size)

    async def RaftStatus(self, request: zero_pb2.RaftStatusRequest, context: Context) -> zero_pb2.RaftStatusResponse:
        """This zero's Raft status (answered locally). On the leader, `progress` lists
        every peer; its `recent_active` is the leader's judgement of the peer's liveness
        (heard from within an election timeout and its stream not down: the same as the
        zero's `healthy` in GetState), not Raft's raw flag, which CheckQuorum clears at
        every round and would make a live peer look inactive for a moment."""
        node = self.node
        st = node.raft_status()
        resp = zero_pb2.RaftStatusResponse(
            id=st.id, term=st.term, vote=st.vote, lead=st.lead, commit=st.commit, applied=node.applied,
            role=st.raft_state.name, cluster_id=node.state.cluster_id)
        lead = node.state.zeros.get(st.lead)
        if lead is not None:
            resp.leader_addr = lead.addr
        for pid, pr in (st.progress or {}).items():
            resp.progress[pid].CopyFrom(zero_pb2.RaftProgress(
                match=pr.match, next=pr.next, state=str(pr.state),
                recent_active=node.membership.is_live(pid, st.progress),
                paused=pr.paused, inflight=pr.inflight, learner=pr.is_learner))
        if self.oracle is not None:
            resp.oracle.CopyFrom(self.oracle.report())
        return resp

    async def SetRebalance(self, request: zero_pb2.SetRebalanceRequest,
                           context: Context) -> zero_pb2.SetRebalanceResponse:
        """ON/OFF: the replicated switch of the periodic rebalancer. NOW: one planning round
        now (whatever the switch says); answers with the moves it started."""
        mode = request.mode
        Mode = zero_pb2.SetRebalanceRequest
        if self.moves is None:
            raise UnimplementedError("the rebalancer is not enabled on this zero")
        if mode in (Mode.ON, Mode.OFF):
            await self.node.propose(state_pb2.Proposal(
                set_rebalance=state_pb2.SetRebalanceEnabled(enabled=mode == Mode.ON)))
            return zero_pb2.SetRebalanceResponse(enabled=self.node.state.rebalance_enabled)
        if mode == Mode.NOW:
            started = await self.moves.rebalance_now()
            return zero_pb2.SetRebalanceResponse(enabled=self.node.state.rebalance_enabled, started_moves=started)
        raise InvalidArgumentError(f"rebalance mode {mode} is not ON, OFF or NOW")

    async def Backup(self, request: zero_pb2.BackupRequest, context: Context) -> AsyncIterator[zero_pb2.BackupChunk]:
        """A consistent backup (zero/ops/backup.py), taken here on the leader (the
        Interceptor forwards it): a ReadIndex barrier, then the state as applied at that
        index, streamed in 1 MiB chunks."""
        node = self.node
        require_leader(node, "backups")
        index, term, body = await node.consistent_snapshot()
        cid = node.state.cluster_id
        if not cid:
            raise UnavailableError("the cluster has no id yet (its first leader is starting); retry")
        data = backup.encode(body, cluster_id=cid, index=index, term=term, leader_id=node.raft_id)
        node.log.info("backup taken", index=index, term=term, bytes=len(data))
        for chunk in backup.chunks(data, version=node.state.version, cluster_id=cid):
            yield chunk
