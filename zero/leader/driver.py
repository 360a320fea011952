"""The tablet move driver: leader-only, it runs moves (admin or rebalancer) and rolls
back orphaned ones (SPEC semantics 1 and 5).

A move, one at a time, every phase a Raft-replicated record (zero/state/moves.py):

    plan -> StartMove       move_ts leased from the timestamp lease; COPYING
         -> FenceMove       FENCED: tablet read-only (cluster version 4; before it,
                            StartMove itself made the tablet read-only)
         -> MoveTablet      on the source group's leader (from heartbeats), with a
                            timeout: the source fences the tablet, copies it to the
                            destination, answers once the destination has all of it
         -> CommitMove      owner := destination, read-only cleared
         -> DropTablet      on the source (best effort: its copy is garbage now)

Any failure or timeout before CommitMove rolls back: AbortMove (owner unchanged,
read-only cleared), DropTablet on the destination, and the tablet backs off from the
rebalancer (zero/leader/backoff.py). CancelMove (`cancel`) rolls back the same way:
the copy call is cancelled, then AbortMove (no back-off: an operator's choice).

The copy itself is still the source's fenced copy, so today FENCED lasts the whole
copy; the unfenced catch-up copy (writes go on during COPYING) and checkpoints are the
next steps (docs/DESIGN.md "Tablet moves").

A new leader's rule (`recover`): a move found in progress (COPYING or FENCED, of any
record version: an older zero's record included) is rolled back. Only the
old leader heard the source's answer, so the new one cannot prove the copy complete;
rolling back is always safe (nothing was written to the tablet since the fence, and
the destination's copy is dropped). The leader keeps checking, so a tablet never stays
read-only longer than one move timeout plus one check period, whoever started it.
It also repeats the last finished move's drop, which the old leader may not have sent.

Whether a move may start is zero/state/moves.py's `check_start`, run here on the state
after a read barrier and again by apply; what to move is zero/leader/planner.py's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from zero.errors import FailedPreconditionError, NotFoundError, UnavailableError, ZeroError
from zero.leader.backoff import Backoff
from zero.leader.datanodes import Channels, LivenessView, group_addrs
from zero.leader.leases import Leases
from zero.leader.move_metrics import MoveMetrics
from zero.leader.planner import placement_of, plan_rebalance
from zero.log import Logger
from zero.pb import datanode_pb2, datanode_pb2_grpc, state_pb2, zero_pb2
from zero.state.delta import Applied
from zero.state.machine import ZeroState
from zero.state import versions
from zero.state.moves import MOVE_HISTORY, ACTIVE_PHASES, RECORD_VERSION, check_start, check_target, phase_name, status_of

__all__ = ["MoveHost", "MoveOptions", "MoveDriver"]


class MoveHost(Protocol):
    """What the move driver needs of the zero it runs on (zero/replica's ZeroNode)."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def log(self) -> Logger: ...
    @property
    def state(self) -> ZeroState: ...
    async def read_barrier(self) -> None: ...
    async def propose(self, proposal: state_pb2.Proposal) -> Applied: ...
    def new_key(self) -> str: ...


@dataclass(frozen=True, slots=True)
class MoveOptions:
    rebalance_interval: float = 480.0  # 0: no periodic rebalancing (NOW still works)
    move_timeout: float = 600.0  # the source's MoveTablet answer, copy included
    backoff: float = 3600.0  # first back-off of a tablet whose move failed
    backoff_max: float = 86400.0
    check_period: float = 1.0  # how often the leader looks for moves nobody drives
    drop_timeout: float = 5.0


class MoveDriver:
    """Leader-only: runs moves (admin or rebalancer) and rolls back orphaned ones.

    `node` is the zero it runs on, `leases` its Leases (move timestamps), `liveness`
    the leader's view of the data nodes. `dial` opens a channel to a data node (TLS with
    --tls-dir); by default plaintext channels, kept open until close(). The app runs
    `leader_duty` while this zero leads (run_leader_task).
    """

    def __init__(self, node: MoveHost, leases: Leases, liveness: LivenessView, *, metrics: MoveMetrics,
                 options: MoveOptions = MoveOptions(), dial: Callable[[str], grpc.aio.Channel] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.node = node
        self.leases = leases
        self.liveness = liveness
        self.opts = options
        self.log = node.log
        self.metrics = metrics
        self.backoff = Backoff(options.backoff, options.backoff_max, clock)
        self._channels = Channels()
        self._dial = dial or self._channels
        self._busy = False  # a move is being planned or driven by this leader
        self._current: asyncio.Task[zero_pb2.MoveTabletResponse] | None = None
        self._wake = asyncio.Event()
        self._redropped = False  # this leadership repeated the last finished move's drop
        self._copying_id = 0  # the move `_current` drives
        self._clock = clock
        self._wall = wall  # started/updated times in move records (operators' clock)
        self._copying: asyncio.Task[datanode_pb2.MoveTabletResult] | None = None
        self._cancelled = 0  # the move id CancelMove asked to roll back
        self._fenced_at: float | None = None  # when the driven move's tablet became read-only

    # -- admin entry points ----------------------------------------------------------------------
    async def move(self, predicate: str, dst_group: int) -> zero_pb2.MoveTabletResponse:
        """Move a tablet now and wait for the outcome (committed or rolled back). The move
        is not cancelled with the caller: once started, a move runs to its end."""
        _, task = await self.start(predicate, dst_group)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # leadership was lost, not our caller gone
                raise UnavailableError("this zero lost leadership during the move; the new leader "
                                       "rolls it back (see the tablet's read_only flag)") from None
            raise

    async def start(self, predicate: str, dst_group: int
                    ) -> tuple[state_pb2.MoveRecord, asyncio.Task[zero_pb2.MoveTabletResponse]]:
        """Start a move (StartMove committed when this returns); the task finishes it.
        NOT_FOUND: unknown tablet or group; FAILED_PRECONDITION: a move in progress."""
        name, dst = check_target(predicate, dst_group)
        self._require_leader()
        if self._busy:
            raise FailedPreconditionError("a tablet move is in progress; one move at a time")
        self._busy = True
        try:
            record = await self._start(name, dst)
        except BaseException:
            self._busy = False
            raise
        task = asyncio.get_running_loop().create_task(self._finish(record), name=f"move-{record.move_id}")
        self._current = task
        self._copying_id = record.move_id
        return record, task

    async def cancel(self, move_id: int) -> zero_pb2.MoveStatus:
        """Roll back move `move_id` (COPYING or FENCED) and answer its record as it ends.
        NOT_FOUND: no such move kept; FAILED_PRECONDITION: it has ended, named phase."""
        self._require_leader()
        await self.node.read_barrier()
        record = next((m for m in self.node.state.moves() if m.move_id == move_id), None)
        if record is None:
            raise NotFoundError(f"move {move_id} is not known (the last {MOVE_HISTORY} finished moves are kept)")
        if record.phase not in ACTIVE_PHASES:
            raise FailedPreconditionError(f"move {move_id} has already ended: it is {phase_name(record)}")
        current = self._current
        if current is not None and not current.done() and self._copying_id == move_id:
            self._cancelled = move_id
            if self._copying is not None:
                self._copying.cancel()
            try:
                await asyncio.shield(current)
            except asyncio.CancelledError:
                if current.cancelled():  # leadership lost: the next leader rolls it back
                    raise UnavailableError("this zero lost leadership while cancelling the move; the new "
                                           "leader rolls it back") from None
                raise
        elif self._busy:
            raise UnavailableError(f"move {move_id} is being started or rolled back; retry shortly")
        else:  # an earlier leader's move, not driven here
            self._busy = True
            try:
                await self._abort(record, "cancelled by the operator", driven=True)
            finally:
                self._busy = False
        final = next((m for m in self.node.state.moves() if m.move_id == move_id), record)
        if final.phase == state_pb2.MOVE_COMMITTED:  # it finished before the cancel took
            raise FailedPreconditionError(f"move {move_id} has already ended: it is COMMITTED")
        return status_of(final)

    async def rebalance_now(self) -> list[int]:
        """One planning round; the ids of the moves it started (at most one)."""
        self._require_leader()
        if self._busy or self.node.state.active_move() is not None:
            return []
        await self.node.read_barrier()
        state = self.node.state.state_copy()
        live = {gid for gid in state.groups if self._addrs(gid)}
        plan = plan_rebalance(state, skip=self.backoff.blocked, groups=live, placement=placement_of(self.node.state))
        if plan is None:
            return []
        self.log.info("rebalance: planned a move", tablet=plan.predicate, src_group=plan.src_group,
                      dst_group=plan.dst_group, bytes=plan.size_bytes)
        record, _ = await self.start(plan.predicate, plan.dst_group)
        return [record.move_id]

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await self._channels.close()

    # -- the leader duty -----------------------------------------------------------------------------
    async def leader_duty(self) -> None:
        """While this zero leads: roll back orphaned moves, rebalance every interval."""
        self._busy = False
        self._redropped = False
        interval = self.opts.rebalance_interval
        next_pass = self._clock() + interval if interval > 0 else float("inf")
        try:
            while True:
                try:
                    await self.recover()
                    if self._clock() >= next_pass:
                        next_pass = self._clock() + interval
                        if self.node.state.rebalance_enabled:
                            started = await self.rebalance_now()
                            if started and self._current is not None:
                                await asyncio.shield(self._current)
                except ZeroError as e:
                    self.log.warning("move duty: will retry", error=str(e))
                pause = min(self.opts.check_period, max(0.0, next_pass - self._clock()))
                try:
                    await asyncio.wait_for(self._wake.wait(), pause)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            if self._current is not None and not self._current.done():
                self._current.cancel()  # leadership lost: the next leader rolls it back
            self._current = None
            self._busy = False
            self.metrics.active.set(0)  # the next leader reports the moves

    async def recover(self) -> None:
        """Roll back a move in progress that this leader is not driving (started by an
        earlier leader), and repeat the last finished move's drop once per leadership."""
        if self._busy:
            return
        await self.node.read_barrier()
        active = self.node.state.active_move()
        self.metrics.active.set(0 if active is None else 1)
        if active is not None:
            self.log.info("move: found a move this leader did not start; rolling it back", move=active.move_id,
                          tablet=active.predicate, src_group=active.src_group, dst_group=active.dst_group)
            self._busy = True
            try:
                await self._abort(active, "zero leader changed during the move", driven=False)
            finally:
                self._busy = False
            return
        if not self._redropped:
            self._redropped = True
            done = [m for m in self.node.state.moves() if m.phase not in ACTIVE_PHASES]
            if done:
                last = max(done, key=lambda m: m.move_id)
                gid = last.src_group if last.phase == state_pb2.MOVE_COMMITTED else last.dst_group
                await self._drop(last, gid)

    # -- one move --------------------------------------------------------------------------------------
    async def _start(self, name: str, dst: int) -> state_pb2.MoveRecord:
        node = self.node
        await node.read_barrier()
        src = check_start(node.state, name, dst).src_group
        if not self._addrs(src):
            raise self._no_live(f"source group {src} has no live member to copy from")
        if not self._addrs(dst):
            raise self._no_live(f"destination group {dst} has no live member to copy to")
        ts = await self.leases.assign(zero_pb2.TIMESTAMP, 1)
        start = state_pb2.StartMove(predicate=name, dst_group=dst, move_ts=ts.start_id)
        if self._v4():
            tablet = node.state.tablet(name)
            start.record_version, start.now_ms = RECORD_VERSION, self._now_ms()
            start.size_bytes = max(0, tablet.size_bytes) if tablet is not None else 0
        applied = await node.propose(state_pb2.Proposal(start_move=start))
        record = applied.move
        assert record is not None
        self.metrics.started.inc()
        self.metrics.active.set(1)
        self.log.info("move: started", move=record.move_id, tablet=name, src_group=src, dst_group=dst,
                      move_ts=record.move_ts, phase=phase_name(record))
        return record

    async def _finish(self, record: state_pb2.MoveRecord) -> zero_pb2.MoveTabletResponse:
        t0 = self._clock()
        self._fenced_at = None if record.record_version >= RECORD_VERSION else t0
        name = record.predicate
        try:
            try:
                self._copying = asyncio.ensure_future(self._copy(record))
                result = await self._copying
            except (ZeroError, grpc.aio.AioRpcError, TimeoutError, asyncio.CancelledError) as e:
                if isinstance(e, asyncio.CancelledError) and self._cancelled != record.move_id:
                    raise  # leadership lost: the next leader rolls it back
                cancelled = isinstance(e, asyncio.CancelledError)
                reason = "cancelled by the operator" if cancelled else _reason(e)
                if not cancelled:
                    self.metrics.failed.inc()
                dur = 0.0 if cancelled else self.backoff.failed(name)
                self.log.warning("move: rolling back", move=record.move_id, tablet=name,
                                 error=reason, backoff_seconds=dur)
                await self._abort(record, reason, driven=True)
                self._observe_fenced()
                return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(name),
                                                   committed=False, message=f"rolled back: {reason}")
            self.metrics.move_bytes.inc(result.size_bytes)
            commit = state_pb2.CommitMove(move_id=record.move_id)
            if self._v4():
                commit.bytes_copied, commit.keys_copied = result.size_bytes, result.keys
                commit.now_ms = self._now_ms()
            try:
                await self._propose_until_done(state_pb2.Proposal(commit_move=commit), record)
            except FailedPreconditionError as e:  # finished by someone else: it was rolled back
                self.log.warning("move: could not commit", move=record.move_id, tablet=name, error=str(e))
                return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(name),
                                                   committed=False, message=f"not committed: {e}")
            secs = self._clock() - t0
            self._observe_fenced()
            self.metrics.succeeded.inc()
            self.metrics.seconds.observe(secs)
            self.metrics.bytes.inc(result.size_bytes)
            self.backoff.succeeded(name)
            self.log.info("move: committed, destination owns the tablet", move=record.move_id, tablet=name,
                          dst_group=record.dst_group, keys=result.keys, bytes=result.size_bytes,
                          seconds=round(secs, 3))
            await self._drop(record, record.src_group)
            return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(name),
                                               committed=True, message=f"moved {result.keys} keys, "
                                               f"{result.size_bytes} bytes in {secs:.2f}s")
        finally:
            self._busy = False
            self._copying = None
            self._cancelled = 0
            self.metrics.active.set(1 if self.node.state.active_move() is not None else 0)
            self._wake.set()

    def _no_live(self, what: str) -> ZeroError:
        # A new leader has not heard every data node yet (liveness lives in the leader's
        # memory): that resolves itself within a heartbeat, so the caller should retry.
        if not self.liveness.settled:
            return UnavailableError(f"{what} yet: this zero became leader moments ago and is still "
                                    "hearing from the data nodes; retry shortly")
        return FailedPreconditionError(what)

    def _observe_fenced(self) -> None:
        if self._fenced_at is not None:
            self.metrics.fenced_seconds.observe(self._clock() - self._fenced_at)
            self._fenced_at = None

    async def _copy(self, record: state_pb2.MoveRecord) -> datanode_pb2.MoveTabletResult:
        """FenceMove (a version-4 record: the source's copy below is fenced), then the copy."""
        if record.record_version >= RECORD_VERSION:
            await self._propose_until_done(state_pb2.Proposal(fence_move=state_pb2.FenceMove(
                move_id=record.move_id, now_ms=self._now_ms())), record)
            self._fenced_at = self._clock()
        src = self._addrs(record.src_group)
        if not src:
            raise UnavailableError(f"source group {record.src_group} has no live member")
        cmd = datanode_pb2.MoveTabletCommand(
            move_id=record.move_id, predicate=record.predicate, src_group=record.src_group,
            dst_group=record.dst_group, dst_addrs=self._addrs(record.dst_group), move_ts=record.move_ts,
            cluster_id=self.node.state.cluster_id)
        self.log.info("move: asking the source to fence and copy", move=record.move_id, source=src[0],
                      destinations=list(cmd.dst_addrs))
        stub = datanode_pb2_grpc.DataNodeStub(self._dial(src[0]))
        result: datanode_pb2.MoveTabletResult = await stub.MoveTablet(cmd, timeout=self.opts.move_timeout)
        if result.move_id != record.move_id:
            raise UnavailableError(f"the source answered for move {result.move_id}, not {record.move_id}")
        self.log.info("move: copy complete", move=record.move_id, keys=result.keys, bytes=result.size_bytes)
        return result

    async def _abort(self, record: state_pb2.MoveRecord, reason: str, *, driven: bool) -> None:
        try:
            await self._propose_until_done(state_pb2.Proposal(abort_move=state_pb2.AbortMove(
                move_id=record.move_id, reason=reason[:500], now_ms=self._now_ms() if self._v4() else 0)), record)
        except FailedPreconditionError as e:  # already finished (by an earlier leader's entry)
            self.log.info("move: already finished, nothing to roll back", move=record.move_id, error=str(e))
            return
        self.metrics.rolled_back.inc()
        if not driven:
            self.backoff.failed(record.predicate)
        self.log.info("move: rolled back, source still owns the tablet", move=record.move_id,
                      tablet=record.predicate, reason=reason)
        await self._drop(record, record.dst_group)

    async def _propose_until_done(self, proposal: state_pb2.Proposal, record: state_pb2.MoveRecord) -> None:
        """Commit or abort must land while we lead (a tablet must not stay read-only):
        retry with the same dedup key; a refusal as stale means it already finished."""
        proposal.key = self.node.new_key()
        while True:
            self._require_leader()
            try:
                await self.node.propose(proposal)
                return
            except UnavailableError as e:
                self.log.warning("move: proposal not applied yet; retrying", move=record.move_id, error=str(e))
                await asyncio.sleep(0.2)

    async def _drop(self, record: state_pb2.MoveRecord, gid: int) -> None:
        """Best effort: ask every live member of `gid` to drop its copy of this move."""
        req = datanode_pb2.DropTabletRequest(move_id=record.move_id, predicate=record.predicate,
                                             cluster_id=self.node.state.cluster_id)
        # Every voting member, not only those heard from: a new leader rolls back before
        # the first heartbeats reach it, and the destination must still drop its copy.
        for addr in self._addrs(gid, live_only=False):
            try:
                r = await datanode_pb2_grpc.DataNodeStub(self._dial(addr)).DropTablet(
                    req, timeout=self.opts.drop_timeout)
                self.log.info("move: copy dropped", move=record.move_id, tablet=record.predicate, group=gid,
                              member=addr, had_data=r.dropped)
            except grpc.aio.AioRpcError as e:
                self.log.warning("move: drop failed (the copy is unused garbage)", move=record.move_id,
                                 tablet=record.predicate, group=gid, member=addr, error=e.details())

    # -- helpers ---------------------------------------------------------------------------------------
    def _require_leader(self) -> None:
        if not self.node.is_leader:
            raise UnavailableError("tablet moves are driven by the zero leader and this zero is not it")

    def _v4(self) -> bool:
        return versions.effective(self.node.state.cluster_version) >= RECORD_VERSION

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    def _addrs(self, gid: int, *, live_only: bool = True) -> list[str]:
        return group_addrs(self.node.state.groups, gid, self.liveness, live_only=live_only)



def _reason(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        # Not necessarily the source's own answer: gRPC reports a connection that never
        # came up, a deadline, or an error the source relays from a destination alike.
        return f"MoveTablet on the source failed with {e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e)
