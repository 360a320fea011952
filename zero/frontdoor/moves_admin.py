"""ZeroAdmin's move methods (SPEC "Moves that keep writes available"): MoveTablet (with
`detach`), GetMoves and CancelMove. Mixed into ZeroAdminService
(zero/frontdoor/admin_service.py), whose interceptor has checked the admin token and
forwarded the call to the leader. The move driver (zero/leader/driver.py) runs moves;
GetMoves reads the replicated move records (zero/state/moves.py).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from zero.errors import InvalidArgumentError, NotFoundError, UnimplementedError
from zero.frontdoor.wire import Context
from zero.pb import state_pb2, zero_pb2
from zero.replica.node import ZeroNode
from zero.state.moves import MOVE_HISTORY, status_of

__all__ = ["MoveControl", "MovesAdmin"]


class MoveControl(Protocol):
    """What the move methods need of the move driver (zero/leader's MoveDriver)."""

    async def move(self, predicate: str, dst_group: int) -> zero_pb2.MoveTabletResponse: ...
    async def start(self, predicate: str, dst_group: int
                    ) -> tuple[state_pb2.MoveRecord, asyncio.Task[zero_pb2.MoveTabletResponse]]: ...
    async def cancel(self, move_id: int) -> zero_pb2.MoveStatus: ...


class MovesAdmin:
    node: ZeroNode
    moves: MoveControl | None  # None: moves are not offered on this zero

    def _mover(self) -> MoveControl:
        if self.moves is None:
            raise UnimplementedError("tablet moves are not enabled on this zero")
        return self.moves

    async def MoveTablet(self, request: zero_pb2.MoveTabletRequest, context: Context) -> zero_pb2.MoveTabletResponse:
        """Move a tablet now (copy included) and answer with the outcome; with `detach`,
        answer once the move is recorded. The driver checks the request and the state
        with zero/state/moves.py's rules, as apply does."""
        mover = self._mover()
        if not request.detach:
            return await mover.move(request.predicate, request.dst_group)
        record, _ = await mover.start(request.predicate, request.dst_group)  # the task runs on
        return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(record.predicate),
                                           committed=False, message="recorded")

    async def GetMoves(self, request: zero_pb2.GetMovesRequest, context: Context) -> zero_pb2.GetMovesResponse:
        """The moves in progress and the most recent finished ones, oldest first (or the
        one named), read linearizably."""
        await self.node.read_barrier()
        records = sorted(self.node.state.moves(), key=lambda r: r.move_id)
        if request.move_id:
            records = [r for r in records if r.move_id == request.move_id]
            if not records:
                raise NotFoundError(f"move {request.move_id} is not known "
                                    f"(the last {MOVE_HISTORY} finished moves are kept)")
        return zero_pb2.GetMovesResponse(moves=[status_of(r) for r in records])

    async def CancelMove(self, request: zero_pb2.CancelMoveRequest, context: Context) -> zero_pb2.CancelMoveResponse:
        """Roll back a move in progress; a finished one is FAILED_PRECONDITION naming its
        phase. Answers once the roll-back is committed."""
        if not request.move_id:
            raise InvalidArgumentError("move_id is 0; name the move to cancel (zero admin moves lists them)")
        return zero_pb2.CancelMoveResponse(move=await self._mover().cancel(request.move_id))
