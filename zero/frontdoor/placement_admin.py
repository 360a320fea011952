"""ZeroAdmin's placement methods (SPEC "Placement"): the policy, group sizes and drains,
explanations, DeleteTablet and BumpLease. Mixed into ZeroAdminService
(zero/frontdoor/admin_service.py), whose interceptor has checked the admin token and
forwarded the call to the leader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from zero.errors import InvalidArgumentError, UnavailableError, UnimplementedError
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.wire import Context
from zero.leader.backoff import Backoff
from zero.leader.leases import Leases
from zero.leader.placement import Mover, PlacementDuty, live_groups
from zero.leader.placement_explain import Facts, explain, policy_status
from zero.leader.planner import Placement, plan_round
from zero.pb import state_pb2, zero_pb2
from zero.replica.node import ZeroNode
from zero.state import placement as placement_state
from zero.state import rules as rules_mod
from zero.state import validate
from zero.state.rules import Rules

__all__ = ["PlacementAdmin", "PlacementMover"]


class PlacementMover(Mover, Protocol):
    """What placement needs of the move driver: moves, its back-off and its leases."""

    leases: Leases


class _Proposed:
    """The state as it would be under other rules (a dry run's view)."""

    def __init__(self, node: ZeroNode, rules: Rules) -> None:
        self._state = node.state
        self.rules = rules

    @property
    def groups(self) -> Mapping[int, zero_pb2.Group]:
        return self._state.groups

    def draining(self, gid: int) -> bool:
        return self._state.draining(gid)

    def draining_groups(self) -> list[int]:
        return self._state.draining_groups()

    def active_move(self) -> state_pb2.MoveRecord | None:
        return self._state.active_move()


class PlacementAdmin:
    node: ZeroNode
    liveness: Liveness
    placement_mover: PlacementMover | None
    placement_duty: PlacementDuty | None

    def _facts(self) -> Facts:
        mover = self.placement_mover
        backoff = mover.backoff if mover is not None else Backoff(0, 0)
        return Facts(live_groups(self.node.state, self.liveness), backoff.failed_ago,
                     self.node.state.rebalance_enabled)

    def _answer(self, view: _Proposed | None = None) -> zero_pb2.PlacementPolicy:
        state = self.node.state
        out = state.placement()
        if view is None:
            view = _Proposed(self.node, state.rules)
        facts = self._facts()
        out.status.extend(policy_status(view, facts))
        mover = self.placement_mover
        skip = mover.backoff.blocked if mover is not None else (lambda n: False)
        rnd = plan_round(state.view, Placement(view.rules, frozenset(view.draining_groups())), skip=skip,
                         groups=facts.live)
        for m in rnd.moves:
            if m.fix:
                out.moves.append(explain(view, m.predicate, rnd, facts))
        return out

    async def SetPlacement(self, request: zero_pb2.PlacementPolicy, context: Context) -> zero_pb2.PlacementPolicy:
        """Replace the policy (compare-and-set with `version`), then run the moves it
        needs; `dry_run`: check it and answer those moves, changing nothing."""
        if request.status or request.moves:
            raise InvalidArgumentError("status and moves are answers; a request carries rules and spread_label")
        node = self.node
        await node.read_barrier()
        if request.dry_run:
            current = node.state.placement().version
            if request.version and request.version != current:
                raise placement_state.stale_version(current, request.version)
            compiled = rules_mod.check_policy(request, node.state.groups)
            out = self._answer(_Proposed(node, compiled))
            out.ClearField("rules")
            out.rules.extend(request.rules)
            out.spread_label = request.spread_label
            out.dry_run = True
            return out
        policy = zero_pb2.PlacementPolicy(rules=request.rules, spread_label=request.spread_label,
                                          version=request.version)
        await node.propose(state_pb2.Proposal(set_placement=state_pb2.SetPlacement(policy=policy)))
        out = self._answer()
        if self.placement_duty is not None and out.moves:
            self.placement_duty.kick()
        return out

    async def GetPlacement(self, request: zero_pb2.GetPlacementRequest, context: Context) -> zero_pb2.PlacementPolicy:
        await self.node.read_barrier()
        return self._answer()

    async def SetGroupReplicas(self, request: zero_pb2.SetGroupReplicasRequest,
                               context: Context) -> zero_pb2.SetGroupReplicasResponse:
        applied = await self.node.propose(state_pb2.Proposal(set_group_replicas=state_pb2.SetGroupReplicas(
            group_id=request.group_id, replicas=request.replicas)))
        group = self.node.state.groups[request.group_id]
        return zero_pb2.SetGroupReplicasResponse(group_id=request.group_id, replicas=applied.result.group.replicas,
                                                 surplus=placement_state.surplus(group, request.replicas))

    async def DrainGroup(self, request: zero_pb2.DrainGroupRequest, context: Context) -> zero_pb2.DrainGroupResponse:
        applied = await self.node.propose(state_pb2.Proposal(drain_group=state_pb2.DrainGroup(
            group_id=request.group_id, undrain=request.undrain)))
        if applied.result.group.draining and self.placement_duty is not None:
            self.placement_duty.kick()
        return zero_pb2.DrainGroupResponse(group_id=request.group_id, draining=applied.result.group.draining,
                                           tablets_left=len(self.node.state.groups[request.group_id].tablets))

    async def ExplainPlacement(self, request: zero_pb2.Tablet, context: Context) -> zero_pb2.PlacementExplanation:
        name = validate.tablet_name(request.predicate)
        await self.node.read_barrier()
        state = self.node.state
        facts = self._facts()
        mover = self.placement_mover
        skip = mover.backoff.blocked if mover is not None else (lambda n: False)
        rnd = plan_round(state.view, Placement(state.rules, frozenset(state.draining_groups())), skip=skip,
                         groups=facts.live)
        return explain(_Proposed(self.node, state.rules), name, rnd, facts)

    async def DeleteTablet(self, request: zero_pb2.Tablet, context: Context) -> zero_pb2.DeleteTabletResponse:
        name = validate.tablet_name(request.predicate)
        applied = await self.node.propose(state_pb2.Proposal(delete_tablet=state_pb2.DeleteTablet(predicate=name)))
        return zero_pb2.DeleteTabletResponse(deleted=applied.result.tablets.tablets[0], version=applied.version)

    async def BumpLease(self, request: zero_pb2.BumpLeaseRequest, context: Context) -> zero_pb2.AssignedIds:
        """Raise a counter to at least `floor`, then drop the leader's leased blocks (they
        lie below it), so every id or timestamp handed out after the answer is above."""
        mover = self.placement_mover
        if mover is None:
            raise UnimplementedError("lease bumps need the leader's leases, which this zero does not run")
        if not self.node.is_leader:
            raise UnavailableError("lease bumps are served by the leader; retry on the leader")
        applied = await self.node.propose(state_pb2.Proposal(bump_lease=request))
        ids = applied.ids
        assert ids is not None
        if ids.start_id:
            mover.leases.leadership_changed(True, 0)  # drops every block (they are below the floor)
        return ids
