"""The transaction oracle's leader side: batching decisions into Raft, the max_assigned
watermark, and advancing safe_ts (docs/DESIGN.md "The oracle").

Decisions are made by the state machine (zero/state/oracle.py); the leader only feeds
it. Commit requests from every caller wait in one queue; a batcher takes what is there,
allocates that many timestamp slots from the timestamp leases (no ReadIndex round: the
batch's Raft commit in this term confirms the leadership the slots were leased under —
a deposed leader's batch never commits) and proposes them as one DecideTxns, then goes
on with the next batch while the first is being replicated. Each batch is appended to
the log before the next takes its slots, so the log's order is the slots' order (and
apply refuses a batch that is not, so that holds even across leader changes).

max_assigned (the Oracle stream's watermark) is the highest timestamp handed out while
no batch is in flight, and otherwise just below the oldest batch in flight: every
commit at or below it has been applied, and so sent to the stream before it. A batch
whose outcome is unknown (a timeout) stays in flight until leadership changes; a new
leader starts from the leased ceiling once its ReadIndex round has applied every entry
of the terms before (those are all decided then, or will never commit).

safe_ts advances on reports only: never past the min_active_ts of a live data node
that reports one, never past the highest timestamp handed out a liveness window ago,
not while no live data node reports, and not for a liveness window after this zero
became leader. Decisions are purged a retention window after safe_ts passed them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from zero.errors import UnavailableError, ZeroError
from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import state_pb2, zero_pb2
from zero.state.delta import Applied
from zero.state.machine import ZeroState
from zero.state.oracle import DECIDED_EARLIER, REASON_NAMES, check_request

__all__ = ["Oracle", "OracleHost", "TimestampSlots", "ActiveReports", "Watermark", "OracleDeltaSink",
           "MAX_BATCH", "RETENTION"]

MAX_BATCH = 4096       # transactions per DecideTxns proposal
RETENTION = 30.0       # seconds a decision is kept after safe_ts passed it
SAFE_TS_PERIOD = 1.0   # seconds between safe_ts proposals
UNAVAILABLE = 14


class OracleHost(Protocol):
    """What the oracle needs of its zero (ZeroNode)."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def state(self) -> ZeroState: ...
    async def read_barrier(self, *, timeout: float | None = None) -> None: ...
    async def propose(self, proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied: ...


class TimestampSlots(Protocol):
    """The timestamp leases (Leases): fresh timestamps without a ReadIndex round."""

    async def commit_slots(self, count: int) -> int: ...


class ActiveReports(Protocol):
    """Data-node liveness: the lowest min_active_ts a live data node reports, or None
    when no live data node reports one."""

    def min_active_ts(self) -> int | None: ...


OracleDeltaSink = Callable[[zero_pb2.OracleDelta], None]


class Watermark:
    """max_assigned from the timestamps handed out and the batches in flight (pure)."""

    __slots__ = ("highest", "inflight", "announced")

    def __init__(self, floor: int = 0) -> None:
        self.highest = floor            # every timestamp at or below was handed out or leased before
        self.inflight: dict[int, int] = {}  # first slot -> last slot of each batch in flight
        self.announced = floor

    def handed_out(self, end: int) -> None:
        if end > self.highest:
            self.highest = end

    def begin(self, first: int, last: int) -> None:
        self.inflight[first] = last
        self.handed_out(last)

    def end(self, first: int) -> None:
        self.inflight.pop(first, None)

    def max_assigned(self) -> int:
        value = min(self.inflight) - 1 if self.inflight else self.highest
        if value > self.announced:  # never decreases
            self.announced = value
        return self.announced


@dataclass(slots=True)
class _Waiting:
    txn: zero_pb2.CommitRequest
    future: asyncio.Future[zero_pb2.CommitResponse]
    retried: bool = False


class Oracle:
    """The leader's half of the oracle. Wire it (zero/app.py): `on_leadership` to the
    node's leadership callbacks, `on_applied` to its applied batches, `handed_out` to the
    timestamp leases, `leader_duty` as a leader task, and a sink for the stream."""

    def __init__(self, node: OracleHost, slots: TimestampSlots, reports: ActiveReports, *,
                 liveness_window: float, log: Logger, metrics: Metrics, retention: float = RETENTION,
                 clock: Callable[[], float] | None = None) -> None:
        self.node = node
        self.metrics = metrics
        self._aborts = {v: metrics.txn_aborts.labels(name) for v, name in REASON_NAMES.items() if v}
        self.slots = slots
        self.reports = reports
        self.liveness_window = liveness_window
        self.retention = retention
        self.log = log
        self._clock = clock
        self.sinks: list[OracleDeltaSink] = []
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._wake = asyncio.Event()
        self._watermark: Watermark | None = None  # None: not serving (not leader, or not ready)
        self._ready = asyncio.Event()
        self._flush_scheduled = False
        self._pending_txns: list[zero_pb2.CommitResponse] = []
        self._deciding = 0  # requests in proposals not yet applied
        self.commits = 0  # decided while this zero led (since it started); aborts by reason beside
        self.aborts: dict[str, int] = {}

    # -- serving ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._watermark is not None

    async def wait_ready(self, timeout: float) -> None:
        """Until this zero serves the oracle as leader; UNAVAILABLE after `timeout`."""
        if not self.node.is_leader:
            raise UnavailableError("this zero is not the leader; the oracle is served by the leader")
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise UnavailableError("the oracle is not ready yet on this leader; retry") from None

    def max_assigned(self) -> int:
        wm = self._watermark
        if wm is None:
            raise UnavailableError("this zero does not serve the oracle now (not the leader, or just elected); retry")
        return wm.max_assigned()

    async def commit(self, txns: Sequence[zero_pb2.CommitRequest]) -> list[zero_pb2.CommitResponse]:
        """A decision (or a refusal with its code) per request, in order."""
        wm = self._watermark
        if wm is None:
            raise UnavailableError("this zero does not serve the oracle now (not the leader, or just elected); retry")
        loop = asyncio.get_running_loop()
        began = loop.time()
        out: list[zero_pb2.CommitResponse | asyncio.Future[zero_pb2.CommitResponse]] = []
        for txn in txns:
            refused = check_request(txn)
            if refused is None and txn.start_ts > wm.highest:
                refused = zero_pb2.CommitResponse(
                    start_ts=txn.start_ts, code=3,
                    message=f"start_ts {txn.start_ts} is above every timestamp handed out ({wm.highest})")
            if refused is not None:
                out.append(refused)
                continue
            fut: asyncio.Future[zero_pb2.CommitResponse] = loop.create_future()
            self._queue.append(_Waiting(txn, fut))
            out.append(fut)
        self._wake.set()
        self._set_pending()
        answers = [r if isinstance(r, zero_pb2.CommitResponse) else await r for r in out]
        self.metrics.txn_commit_seconds.observe(loop.time() - began)
        return answers

    async def try_abort(self, start_ts: Sequence[int]) -> list[zero_pb2.CommitResponse]:
        return await self.commit([zero_pb2.CommitRequest(start_ts=ts, abort=True) for ts in start_ts])

    async def status(self, start_ts: Sequence[int]) -> list[zero_pb2.CommitResponse]:
        """The decisions, read linearizably (a ReadIndex round); deciding nothing."""
        await self.node.read_barrier()
        oracle = self.node.state.oracle
        return [oracle.status(ts) for ts in start_ts]

    def report(self) -> zero_pb2.OracleStatus:
        """What the status page and `zero admin status|state` show."""
        o = self.node.state.oracle
        wm = self._watermark
        return zero_pb2.OracleStatus(
            serving=wm is not None, max_assigned=wm.max_assigned() if wm is not None else 0, safe_ts=o.safe_ts,
            commits=self.commits, aborts=self.aborts, pending=len(self._queue) + self._deciding,
            conflict_keys=o.conflict_keys, decisions=o.decisions, purged_below=o.purged_below)

    # -- wiring --------------------------------------------------------------------------------
    def on_leadership(self, leader: bool, term: int) -> None:
        """Whatever waits is answered UNAVAILABLE (a retry gets the decision if one was
        made: decisions are final); the stream's subscribers are ended by their hub."""
        self._watermark = None
        self._ready.clear()
        while self._queue:
            w = self._queue.popleft()
            if not w.future.done():
                w.future.set_exception(UnavailableError("leadership changed; retry (a decision made is final)"))

    def handed_out(self, kind: int, end: int) -> None:
        """The timestamp leases handed out timestamps up to `end`."""
        wm = self._watermark
        if wm is not None and kind == zero_pb2.TIMESTAMP and end > wm.highest:
            wm.handed_out(end)
            self._schedule_flush()

    def on_applied(self, batch: list[Applied]) -> None:
        wm = self._watermark
        if wm is None:
            return
        for a in batch:
            if a.result.HasField("decisions"):
                d = a.result.decisions
                wm.end(d.first_slot)
                self._pending_txns.extend(r for r in d.txns if r.code == 0)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        wm = self._watermark
        if wm is None:
            self._pending_txns.clear()
            return
        delta = zero_pb2.OracleDelta(txns=self._pending_txns, max_assigned=wm.max_assigned(),
                                     safe_ts=self.node.state.oracle.safe_ts)
        self.metrics.oracle_max_assigned.set(delta.max_assigned)
        self.metrics.oracle_safe_ts.set(delta.safe_ts)
        self._pending_txns = []
        for sink in self.sinks:
            sink(delta)

    # -- the leader's work -----------------------------------------------------------------------
    async def leader_duty(self) -> None:
        """Run while this zero leads: become ready, then batch and advance safe_ts."""
        await self.node.read_barrier()  # every entry of the terms before is applied now
        self._watermark = Watermark(self.node.state.max_txn_ts)
        self._ready.set()
        self._schedule_flush()
        batcher = asyncio.get_running_loop().create_task(self._batcher(), name="oracle-batcher")
        try:
            await self._advance_safe_ts()
        finally:
            batcher.cancel()

    async def _batcher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                batch = [w for w in batch if not w.future.done()]  # a caller that gave up
                if not batch:
                    continue
                try:
                    first = await self.slots.commit_slots(len(batch))
                except ZeroError as e:
                    _fail(batch, e)
                    continue
                wm = self._watermark
                if wm is None:
                    _fail(batch, UnavailableError("leadership changed; retry"))
                    continue
                wm.begin(first, first + len(batch) - 1)
                proposal = state_pb2.Proposal(decide_txns=state_pb2.DecideTxns(
                    txns=[w.txn for w in batch], first_commit_ts=first))
                asyncio.get_running_loop().create_task(self._propose(proposal, batch))
                await asyncio.sleep(0)  # the task appends to the log before the next batch takes slots

    def _set_pending(self) -> None:
        self.metrics.oracle_pending.set(len(self._queue) + self._deciding)

    async def _propose(self, proposal: state_pb2.Proposal, batch: list[_Waiting]) -> None:
        self._deciding += len(batch)
        try:
            applied = await self.node.propose(proposal)
        except ZeroError as e:
            _fail(batch, e)  # outcome unknown: the slots stay in flight until leadership changes
            return
        finally:
            self._deciding -= len(batch)
            self._set_pending()
        requeue = False
        commits = 0
        for w, r in zip(batch, applied.result.decisions.txns):
            if r.code == 0 and r.message != DECIDED_EARLIER:
                if r.aborted:
                    self._aborts[r.reason].inc()
                    name = REASON_NAMES[r.reason]
                    self.aborts[name] = self.aborts.get(name, 0) + 1
                else:
                    commits += 1
            if w.future.done():
                continue
            if r.code == UNAVAILABLE and not w.retried:  # a batch out of slot order: once more
                w.retried = requeue = True
                self._queue.append(w)
            else:
                w.future.set_result(r)
        self.metrics.txn_commits.inc(commits)
        self.commits += commits
        if requeue:
            self._wake.set()

    async def _advance_safe_ts(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._clock or loop.time
        since = now()
        marks: collections.deque[tuple[float, int]] = collections.deque()  # (time, highest handed out)
        safes: collections.deque[tuple[float, int]] = collections.deque()  # (time, safe_ts)
        while True:
            await asyncio.sleep(SAFE_TS_PERIOD)
            wm = self._watermark
            if wm is None:
                return
            t = now()
            marks.append((t, wm.highest))
            oracle = self.node.state.oracle
            safes.append((t, oracle.safe_ts))
            bound = _value_at(marks, t - self.liveness_window)
            purge = _value_at(safes, t - self.retention) or 0
            reported = self.reports.min_active_ts()
            if bound is None or reported is None or t - since < self.liveness_window:
                continue
            target = min(bound, reported)
            if target > oracle.safe_ts or purge > oracle.purged_below:
                await self.node.propose(state_pb2.Proposal(advance_safe_ts=state_pb2.AdvanceSafeTs(
                    safe_ts=max(target, oracle.safe_ts), purge_below=purge)))


def _value_at(samples: collections.deque[tuple[float, int]], t: float) -> int | None:
    """The last sample taken at or before `t` (older ones are dropped), or None."""
    while len(samples) >= 2 and samples[1][0] <= t:
        samples.popleft()
    if samples and samples[0][0] <= t:
        return samples[0][1]
    return None


def _fail(batch: list[_Waiting], e: BaseException) -> None:
    for w in batch:
        if not w.future.done():
            w.future.set_exception(e)
