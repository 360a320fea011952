"""The leader's placement duty: after the policy changes or a group starts draining,
run the moves that put tablets where the rules want them, one at a time, through the
move driver (zero/leader/driver.py), until a round plans none (docs/DESIGN.md
"Placement").

Only the rules' moves run here (MovePlan.fix); evening out the load stays with the
rebalancer's rounds, which plan the rules' moves first as well, so a new leader, which
starts with no duty running, still converges at its first round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from zero.errors import ZeroError
from zero.leader.backoff import Backoff
from zero.leader.datanodes import LivenessView, group_addrs
from zero.leader.planner import Round, placement_of, plan_round
from zero.log import Logger
from zero.pb import zero_pb2
from zero.state.machine import ZeroState

__all__ = ["PlacementHost", "Mover", "PlacementDuty", "live_groups", "plan_now"]


class PlacementHost(Protocol):
    @property
    def is_leader(self) -> bool: ...
    @property
    def log(self) -> Logger: ...
    @property
    def state(self) -> ZeroState: ...
    async def read_barrier(self) -> None: ...


class Mover(Protocol):
    backoff: Backoff

    async def move(self, predicate: str, dst_group: int) -> zero_pb2.MoveTabletResponse: ...


def live_groups(state: ZeroState, liveness: LivenessView) -> set[int]:
    """Groups with a live voting member (heard from by this leader)."""
    return {gid for gid in state.groups if group_addrs(state.groups, gid, liveness)}


def plan_now(state: ZeroState, liveness: LivenessView, skip: Callable[[str], bool]) -> Round:
    return plan_round(state.view, placement_of(state), skip=skip, groups=live_groups(state, liveness))


class PlacementDuty:
    """Runs the rules' moves in the background on the leader; `kick()` after a change."""

    def __init__(self, node: PlacementHost, mover: Mover, liveness: LivenessView, *, pause: float = 0.5) -> None:
        self.node = node
        self.mover = mover
        self.liveness = liveness
        self.pause = pause
        self._task: asyncio.Task[None] | None = None
        self.moves_run = 0

    def kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="placement-duty")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        node, log = self.node, self.node.log
        idle = 0
        while node.is_leader and idle < 20:
            try:
                await node.read_barrier()
                if node.state.active_move() is not None:
                    await asyncio.sleep(self.pause)
                    continue
                fixes = [m for m in plan_now(node.state, self.liveness, self.mover.backoff.blocked).moves if m.fix]
                if not fixes:
                    return
                plan = fixes[0]
                log.info("placement: moving a tablet where the rules want it", tablet=plan.predicate,
                         src_group=plan.src_group, dst_group=plan.dst_group, reason=plan.reason)
                resp = await self.mover.move(plan.predicate, plan.dst_group)
                self.moves_run += 1
                idle = 0 if resp.committed else idle + 1
            except ZeroError as e:  # a move the driver refused (busy, no live member): retry
                idle += 1
                log.info("placement: will retry", error=str(e))
                await asyncio.sleep(self.pause)
