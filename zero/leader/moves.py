"""Tablet moves and the rebalancer, driven by zero's leader (SPEC semantics 1 and 5).

A move, one at a time, every phase a Raft-replicated record (zero/state/machine.py):

    plan -> StartMove       tablet read-only, move_ts leased from the timestamp lease
         -> MoveTablet      on the source group's leader (from heartbeats), with a
                            timeout: the source fences the tablet, copies it to the
                            destination, answers once the destination has all of it
         -> CommitMove      owner := destination, read-only cleared
         -> DropTablet      on the source (best effort: its copy is garbage now)

Any failure or timeout before CommitMove rolls back: AbortMove (owner unchanged,
read-only cleared), DropTablet on the destination, and the tablet backs off from the
rebalancer (1 h doubling to 24 h, as Dgraph; in leader memory only).

A new leader's rule (`recover`): a move found in MOVE_COPYING is rolled back. Only the
old leader heard the source's answer, so the new one cannot prove the copy complete;
rolling back is always safe (nothing was written to the tablet since the fence, and
the destination's copy is dropped). The leader keeps checking, so a tablet never stays
read-only longer than one move timeout plus one check period, whoever started it.
It also repeats the last finished move's drop, which the old leader may not have sent.

The planner (`plan_rebalance`) is a pure function of the membership state, as Dgraph
Zero's: group sizes are the sums of reported tablet sizes; when the largest and the
smallest group differ by more than 10 % of the largest, move the largest tablet of the
largest group that is at most half the difference to the smallest group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zero.state import validate
from zero.rpc import RECONNECT_OPTIONS
from zero.errors import FailedPreconditionError, NotFoundError, UnavailableError, ZeroError
from zero.leader.leases import Leases
from zero.replica.node import ZeroNode
from zero.pb import datanode_pb2, datanode_pb2_grpc, state_pb2, zero_pb2

__all__ = ["MovePlan", "MoveOptions", "MoveDriver", "MoveMetrics", "group_sizes", "plan_rebalance",
           "Backoff", "IMBALANCE", "DIAL_OPTIONS", "dial"]

IMBALANCE = 0.10  # groups within this fraction of the largest are balanced


# -- the planner (pure) -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MovePlan:
    predicate: str
    src_group: int
    dst_group: int
    size_bytes: int


def group_sizes(state: zero_pb2.MembershipState) -> dict[int, int]:
    """Bytes per group (sum of its tablets' reported sizes); only groups with a voting
    member count, since only they can take a tablet."""
    return {gid: sum(t.size_bytes for t in g.tablets.values())
            for gid, g in state.groups.items() if any(not m.learner for m in g.members.values())}


def plan_rebalance(state: zero_pb2.MembershipState, *, skip: Callable[[str], bool] = lambda name: False,
                   groups: set[int] | None = None) -> MovePlan | None:
    """The next move that evens out group sizes, or None. `skip(name)` excludes tablets
    (backed off); `groups`, when given, limits planning to those groups (the live ones).
    Ties break on the lower group id and the tablet name: same input, same plan."""
    sizes = {g: s for g, s in group_sizes(state).items() if groups is None or g in groups}
    if len(sizes) < 2:
        return None
    src = max(sizes, key=lambda g: (sizes[g], -g))
    dst = min(sizes, key=lambda g: (sizes[g], g))
    diff = sizes[src] - sizes[dst]
    if diff <= IMBALANCE * sizes[src]:
        return None
    best: zero_pb2.Tablet | None = None
    for name in sorted(state.groups[src].tablets):
        t = state.groups[src].tablets[name]
        if t.read_only or t.size_bytes <= 0 or t.size_bytes > diff // 2 or skip(name):
            continue
        if best is None or t.size_bytes > best.size_bytes:
            best = t
    if best is None:
        return None
    return MovePlan(best.predicate, src, dst, best.size_bytes)


class Backoff:
    """Per-tablet back-off after a failed move: `base` doubling to `cap` (seconds)."""

    def __init__(self, base: float, cap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap, self._clock = base, cap, clock
        self._until: dict[str, tuple[float, float]] = {}  # name -> (until, last duration)

    def failed(self, name: str) -> float:
        last = self._until.get(name, (0.0, 0.0))[1]
        dur = min(self.cap, last * 2) if last else self.base
        self._until[name] = (self._clock() + dur, dur)
        return dur

    def succeeded(self, name: str) -> None:
        self._until.pop(name, None)

    def blocked(self, name: str) -> bool:
        got = self._until.get(name)
        return got is not None and self._clock() < got[0]


# -- metrics ----------------------------------------------------------------------------------------
class _GroupSizes(Collector):
    def __init__(self, state: Callable[[], zero_pb2.MembershipState]) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("zero_group_size_bytes", "Sum of the reported tablet sizes of each group",
                              labels=["group"])
        try:
            for gid, size in sorted(group_sizes(self._state()).items()):
                g.add_metric([str(gid)], size)
        except Exception:  # a half-built node: report nothing rather than fail the scrape
            pass
        yield g


class MoveMetrics:
    def __init__(self, registry: CollectorRegistry, state: Callable[[], zero_pb2.MembershipState]) -> None:
        r = registry
        self.started = Counter("zero_tablet_moves_started", "Tablet moves started (StartMove committed)", registry=r)
        self.succeeded = Counter("zero_tablet_moves_succeeded", "Tablet moves committed", registry=r)
        self.failed = Counter("zero_tablet_moves_failed", "Tablet moves whose copy failed or timed out",
                              registry=r)
        self.rolled_back = Counter("zero_tablet_moves_rolled_back",
                                   "Tablet moves rolled back (AbortMove committed), also by a new leader",
                                   registry=r)
        self.seconds = Histogram("zero_tablet_move_seconds", "Duration of committed tablet moves",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900), registry=r)
        self.bytes = Counter("zero_tablet_move_bytes", "Bytes copied by committed tablet moves", registry=r)
        r.register(_GroupSizes(state))


# -- the driver -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MoveOptions:
    rebalance_interval: float = 480.0  # 0: no periodic rebalancing (NOW still works)
    move_timeout: float = 600.0  # the source's MoveTablet answer, copy included
    backoff: float = 3600.0  # first back-off of a tablet whose move failed
    backoff_max: float = 86400.0
    check_period: float = 1.0  # how often the leader looks for moves nobody drives
    drop_timeout: float = 5.0



class LivenessView(Protocol):
    """What the move driver needs of data-node liveness (zero/frontdoor/server.py's Liveness)."""

    @property
    def settled(self) -> bool: ...
    def fill(self, m: zero_pb2.Member) -> None: ...

class MoveDriver:
    """Leader-only: runs moves (admin or rebalancer) and rolls back orphaned ones.

    `node` is a ZeroNode, `leases` a Leases, `liveness` a server.Liveness. Start it with
    `node.on_leadership.append(run_leader_task(node, driver.leader_duty, "moves"))`.
    """

    def __init__(self, node: ZeroNode, leases: Leases, liveness: LivenessView, *, options: MoveOptions = MoveOptions(),
                 metrics: MoveMetrics | None = None,
                 dial: Callable[[str], Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.leases = leases
        self.liveness = liveness
        self.opts = options
        self.log = node.log
        self.metrics = metrics or MoveMetrics(node.metrics.registry, node.state.state_copy)
        self.backoff = Backoff(options.backoff, options.backoff_max, clock)
        self._dial = dial or self._default_dial
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._busy = False  # a move is being planned or driven by this leader
        self._current: asyncio.Task[zero_pb2.MoveTabletResponse] | None = None
        self._wake = asyncio.Event()
        self._redropped = False  # this leadership repeated the last finished move's drop
        self._clock = clock

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
        name = validate.tablet_name(predicate)
        dst = validate.group_id(dst_group, "destination group")
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
        return record, task

    async def rebalance_now(self) -> list[int]:
        """One planning round; the ids of the moves it started (at most one)."""
        self._require_leader()
        if self._busy or self.node.state.active_move() is not None:
            return []
        await self.node.read_barrier()
        state = self.node.state.state_copy()
        live = {gid for gid in state.groups if self._addrs(gid)}
        plan = plan_rebalance(state, skip=self.backoff.blocked, groups=live)
        if plan is None:
            return []
        self.log.info("rebalance: planned a move", tablet=plan.predicate, src_group=plan.src_group,
                      dst_group=plan.dst_group, bytes=plan.size_bytes)
        record, _ = await self.start(plan.predicate, plan.dst_group)
        return [record.move_id]

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

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

    async def recover(self) -> None:
        """Roll back a move in progress that this leader is not driving (started by an
        earlier leader), and repeat the last finished move's drop once per leadership."""
        if self._busy:
            return
        await self.node.read_barrier()
        active = self.node.state.active_move()
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
            done = [m for m in self.node.state.moves() if m.phase != state_pb2.MOVE_COPYING]
            if done:
                last = max(done, key=lambda m: m.move_id)
                gid = last.src_group if last.phase == state_pb2.MOVE_COMMITTED else last.dst_group
                await self._drop(last, gid)

    # -- one move --------------------------------------------------------------------------------------
    async def _start(self, name: str, dst: int) -> state_pb2.MoveRecord:
        node = self.node
        await node.read_barrier()
        state = node.state
        active = state.active_move()
        if active is not None:
            raise FailedPreconditionError(
                f"move {active.move_id} of tablet {active.predicate!r} is in progress; one move at a time")
        src = state.group_of(name)
        if not src:
            raise NotFoundError(f"tablet {name!r} is not served by any group")
        if dst not in state.groups:
            raise NotFoundError(f"destination group {dst} does not exist")
        if src == dst:
            raise FailedPreconditionError(f"tablet {name!r} is already served by group {dst}")
        if not self._addrs(src):
            raise self._no_live(f"source group {src} has no live member to copy from")
        if not self._addrs(dst):
            raise self._no_live(f"destination group {dst} has no live member to copy to")
        ts = await self.leases.assign(zero_pb2.TIMESTAMP, 1)
        applied = await node.propose(state_pb2.Proposal(start_move=state_pb2.StartMove(
            predicate=name, dst_group=dst, move_ts=ts.start_id)))
        record = applied.move
        assert record is not None
        self.metrics.started.inc()
        self.log.info("move: started, tablet is read-only", move=record.move_id, tablet=name, src_group=src,
                      dst_group=dst, move_ts=record.move_ts)
        return record

    async def _finish(self, record: state_pb2.MoveRecord) -> zero_pb2.MoveTabletResponse:
        t0 = self._clock()
        name = record.predicate
        try:
            try:
                result = await self._copy(record)
            except (ZeroError, grpc.aio.AioRpcError, TimeoutError) as e:
                reason = _reason(e)
                self.metrics.failed.inc()
                dur = self.backoff.failed(name)
                self.log.warning("move: copy failed; rolling back", move=record.move_id, tablet=name,
                                 error=reason, backoff_seconds=dur)
                await self._abort(record, reason, driven=True)
                return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(name),
                                                   committed=False, message=f"rolled back: {reason}")
            try:
                await self._propose_until_done(state_pb2.Proposal(commit_move=state_pb2.CommitMove(
                    move_id=record.move_id)), record)
            except FailedPreconditionError as e:  # finished by someone else: it was rolled back
                self.log.warning("move: could not commit", move=record.move_id, tablet=name, error=str(e))
                return zero_pb2.MoveTabletResponse(move_id=record.move_id, tablet=self.node.state.tablet(name),
                                                   committed=False, message=f"not committed: {e}")
            secs = self._clock() - t0
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
            self._wake.set()

    def _no_live(self, what: str) -> ZeroError:
        # A new leader has not heard every data node yet (liveness lives in the leader's
        # memory): that resolves itself within a heartbeat, so the caller should retry.
        if not self.liveness.settled:
            return UnavailableError(f"{what} yet: this zero became leader moments ago and is still "
                                    "hearing from the data nodes; retry shortly")
        return FailedPreconditionError(what)

    async def _copy(self, record: state_pb2.MoveRecord) -> datanode_pb2.MoveTabletResult:
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
                move_id=record.move_id, reason=reason[:500])), record)
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

    def _addrs(self, gid: int, *, live_only: bool = True) -> list[str]:
        """Addresses of group `gid`'s healthy voting members (all voting members unless
        `live_only`), its leader (by heartbeat) first, then the healthy ones."""
        group = self.node.state.groups.get(gid)
        if group is None:
            return []
        members = []
        for m in group.members.values():
            live = zero_pb2.Member()
            live.CopyFrom(m)
            self.liveness.fill(live)
            if (live.healthy or not live_only) and not live.learner:
                members.append(live)
        members.sort(key=lambda m: (not m.leader, not m.healthy, m.id))
        return [m.addr for m in members]

    def _default_dial(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = dial(addr)
        return ch


# A data node back from a few seconds down must be dialled again at once, not after
# gRPC's own backoff (which grows to 2 minutes): meanwhile every move from or to it would
# be rolled back and its tablet backed off (zero/rpc.py).
DIAL_OPTIONS: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 16 << 20), *RECONNECT_OPTIONS]


def dial(addr: str) -> grpc.aio.Channel:
    """A plaintext channel to a data node (the leader's MoveTablet and DropTablet calls)."""
    return grpc.aio.insecure_channel(addr, options=DIAL_OPTIONS)


def _reason(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        # Not necessarily the source's own answer: gRPC reports a connection that never
        # came up, a deadline, or an error the source relays from a destination alike.
        return f"MoveTablet on the source failed with {e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e)
