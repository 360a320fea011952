"""A data node's part in transactions (SPEC "Transactions: the oracle"): the writes it
holds until the oracle decides, the reads it serves at a timestamp, and the decisions
it applies from the Oracle stream. The client side is zero/datanode/txn.py.

- Prewrite: a transaction's writes to tablets this group serves are held under its
  start_ts, durably with a data dir (zero/datanode/pending.py) before the answer.
- Decisions come on the Oracle stream (zero.client's OracleWatcher) in commit_ts order:
  a commit's held writes become versions at its commit_ts (zero/datanode/store.py), an
  abort's are dropped; decisions of transactions that hold nothing here are ignored.
  Applying a decision twice changes nothing, so a decision may also be applied when a
  TxnStatus or TryAbort answer brings it first.
- The stream carries only the aborts decided while subscribed, and a node may have been
  away: prewrites undecided for `pending_check` seconds are looked up with TxnStatus,
  and those undecided for `pending_timeout` (a client that died between prewrite and
  commit) are aborted with TryAbort, so none pins safe_ts for ever.
- Reads: a read at read_ts waits until the stream's max_assigned reaches it; then every
  commit at or below read_ts that wrote here is applied (its writes were prewritten here
  before it was decided, and the stream sent it before that max_assigned). A read
  below safe_ts is refused: versions hidden there may be collected.
- min_active_ts, for the heartbeats: the oldest start_ts of a transaction with writes
  held here or a read served here within `read_hold` seconds and not decided since
  (0: none). zero's safe_ts never passes it while this node is live.
- Garbage collection: once the stream's safe_ts moves, versions hidden below it go
  (TabletStore.collect), and tablet logs twice their live size are rewritten.
- (Re)start, `sync`: r := the oracle's max_assigned; the decisions of every prewrite
  held are looked up (TxnStatus) and applied; then the stream is followed from r. What
  was undecided at the lookup is decided above r, so the stream brings it. The same
  runs again if the stream stops for good (zero purged the history it would resume
  from: the node was stopped for longer than the oracle keeps decisions).
- A decision zero purged (the node away for longer than safe_ts' lag plus the oracle's
  retention, 40 s by default) cannot be learned any more: the writes are dropped and
  the node logs an error. That is the limit of this reference node's durability.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from zero.client import CommitRefused, ZeroClient
from zero.datanode.pending import Flusher, PendingLog, Write, prewrite_line, resolved_line
from zero.datanode.store import TabletStore
from zero.datanode.txn import conflict_key
from zero.errors import FailedPreconditionError, UnavailableError, ZeroError
from zero.log import Logger
from zero.pb import zero_pb2

__all__ = ["Transactions", "AbortedError", "READ_HOLD", "PENDING_CHECK", "PENDING_TIMEOUT"]

READ_HOLD = 10.0        # seconds a read's start_ts is held in min_active_ts (unless decided sooner)
PENDING_CHECK = 2.0     # seconds before an undecided prewrite is looked up with TxnStatus
PENDING_TIMEOUT = 10.0  # seconds before it is aborted with TryAbort
REMEMBERED = 100_000    # recent decisions kept (a prewrite of a decided transaction is refused)
LOOKUP_CHUNK = 10_000   # start_ts per TxnStatus / TryAbort call
PUT_ATTEMPTS = 10       # an autocommit Put retried on CONFLICT (it is a blind write)
FAILED_PRECONDITION = 9


class AbortedError(ZeroError):
    """The transaction was aborted (gRPC ABORTED): retrying may succeed."""

    code = "ABORTED"


@dataclass(slots=True)
class _Pending:
    since: float  # when it was prewritten here (the loop's clock)
    writes: dict[tuple[str, bytes], bytes] = field(default_factory=dict)


class Transactions:
    def __init__(self, store: TabletStore, zc: ZeroClient, log: Logger, *, read_hold: float = READ_HOLD,
                 pending_check: float = PENDING_CHECK, pending_timeout: float = PENDING_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.zc = zc
        self.log = log
        self.read_hold = read_hold
        self.pending_check = pending_check
        self.pending_timeout = pending_timeout
        self._clock = clock
        self.plog = PendingLog(store.data_dir)
        now = clock()
        self.pending: dict[int, _Pending] = {
            ts: _Pending(now, {(t, k): v for t, k, v in ws}) for ts, ws in self.plog.load().items()}
        self.flusher = Flusher(store, self.plog, live=self._live, on_error=self._disk_failed)
        self.reads: dict[int, float] = {}  # start_ts -> until when it is held
        self._decided: OrderedDict[int, int] = OrderedDict()  # start_ts -> commit_ts (0: aborted)
        self.ready = asyncio.Event()  # set once `sync` ran: reads and prewrites are served
        self._listening = False
        self._stream_error: BaseException | None = None
        self.collected_at = 0
        self.applied = self.aborted = self.lost = 0  # decisions that found writes here

    # -- what zero is told -------------------------------------------------------------------------
    def min_active_ts(self) -> int:
        now = self._clock()
        for ts in [ts for ts, until in self.reads.items() if until < now]:
            del self.reads[ts]
        held = [*self.pending, *self.reads]
        return min(held) if held else 0

    @property
    def safe_ts(self) -> int:
        """No read below this: the oracle's safe_ts, or the floor of what was collected."""
        return max(self.zc.oracle.safe_ts, self.store.floor)

    # -- reads and writes ----------------------------------------------------------------------------
    def check_read_ts(self, read_ts: int) -> None:
        if read_ts < self.safe_ts:
            raise FailedPreconditionError(f"read_ts {read_ts} is below safe_ts {self.safe_ts}: versions it "
                                          f"would read may be collected; begin a new transaction")

    def note_read(self, read_ts: int) -> None:
        if read_ts not in self._decided:
            self.reads[read_ts] = max(self.reads.get(read_ts, 0.0), self._clock() + self.read_hold)

    async def prewrite(self, start_ts: int, writes: Sequence[Write]) -> None:
        """Hold the writes until the transaction is decided; returns once durable."""
        done = self._decided.get(start_ts)
        if done is not None:
            raise FailedPreconditionError(f"transaction {start_ts} was decided already "
                                          f"({'committed' if done else 'aborted'})")
        if start_ts < self.safe_ts:
            raise FailedPreconditionError(f"start_ts {start_ts} is below safe_ts {self.safe_ts}: the oracle "
                                          f"would abort it (TOO_OLD); begin a new transaction")
        p = self.pending.get(start_ts)
        if p is None:
            p = self.pending[start_ts] = _Pending(self._clock())
        p.writes.update(((t, k), v) for t, k, v in writes)
        await self.flusher.submit(lines=[prewrite_line(start_ts, writes)])

    def pending_on(self, tablet: str) -> list[int]:
        return [ts for ts, p in self.pending.items() if any(t == tablet for t, _ in p.writes)]

    # -- decisions -------------------------------------------------------------------------------------
    def on_delta(self, delta: zero_pb2.OracleDelta) -> None:
        """The Oracle stream's listener (called before its max_assigned is published)."""
        for r in delta.txns:
            self.apply(r)

    def apply(self, r: zero_pb2.CommitResponse) -> asyncio.Future[None] | None:
        """Apply one decision to what this node holds; the future of its persistence
        (None: nothing held here, or not a decision)."""
        if r.code or not (r.aborted or r.commit_ts):
            return None
        ts = r.start_ts
        self.reads.pop(ts, None)
        self._decided[ts] = 0 if r.aborted else r.commit_ts
        self._decided.move_to_end(ts)
        while len(self._decided) > REMEMBERED:
            self._decided.popitem(last=False)
        p = self.pending.pop(ts, None)
        if p is None:
            return None
        if r.aborted:
            self.aborted += 1
            return self.flusher.submit(lines=[resolved_line(ts)])
        versions = [(t, k, r.commit_ts, v) for (t, k), v in p.writes.items()]
        self.store.add(versions)
        self.applied += 1
        return self.flusher.submit(versions, [resolved_line(ts)])

    def _lost(self, r: zero_pb2.CommitResponse) -> None:
        p = self.pending.pop(r.start_ts, None)
        if p is None:
            return
        self.lost += 1
        self.log.error("a transaction's decision is no longer known to zero; its writes here are dropped",
                       start_ts=r.start_ts, writes=len(p.writes), error=r.message)
        self.flusher.submit(lines=[resolved_line(r.start_ts)])

    async def resolve(self, start_ts: Sequence[int], *, abort: bool) -> None:
        """Look the decisions up (TxnStatus), or abort what is undecided (TryAbort), and
        apply them; waits until the commits among them are durable here."""
        flushes: list[asyncio.Future[None]] = []
        for i in range(0, len(start_ts), LOOKUP_CHUNK):
            part = list(start_ts[i:i + LOOKUP_CHUNK])
            answers = await (self.zc.try_abort(part) if abort else self.zc.txn_status(part))
            for r in answers:
                if r.code == FAILED_PRECONDITION:
                    self._lost(r)
                elif (fut := self.apply(r)) is not None:
                    flushes.append(fut)
        if flushes:
            await asyncio.gather(*flushes)

    async def settle(self, tablet: str) -> None:
        """Before a move copies `tablet`: nothing written to it left undecided here (each
        such transaction aborted unless decided already, the commits applied)."""
        ids = self.pending_on(tablet)
        if ids:
            await self.resolve(ids, abort=True)

    async def autocommit(self, tablet: str, key: bytes, value: bytes, group: int) -> zero_pb2.CommitResponse:
        """A single write as a transaction of its own (the Put RPC), retried on CONFLICT;
        the decision, applied and durable here when it commits. UnavailableError when
        its outcome is unknown (the held write is resolved later)."""
        d = zero_pb2.CommitResponse()
        for _ in range(PUT_ATTEMPTS):
            start = await self.zc.timestamp()
            await self.prewrite(start, [(tablet, key, value)])
            try:
                d = await self.zc.commit(start, [conflict_key(tablet, key)], [(tablet, group)])
            except (CommitRefused, grpc.aio.AioRpcError) as e:
                raise UnavailableError(f"the write's outcome is unknown: {e}") from None
            fut = self.apply(d)
            if fut is not None:
                await fut
            if not d.aborted or d.reason != zero_pb2.CONFLICT:
                return d
        return d

    # -- the stream, and the node's periodic duty ------------------------------------------------------
    async def sync(self) -> None:
        """After a (re)start, or when the stream stopped for good (see the module doc)."""
        r = await self.zc.read_timestamp()
        if self.pending:
            await self.resolve(sorted(self.pending), abort=False)
        if not self._listening:
            self.zc.oracle.listeners.append(self.on_delta)
            self._listening = True
        self.zc.watch_oracle(r)
        self.ready.set()

    async def check(self) -> None:
        """Resync a stream that stopped, resolve prewrites left undecided, collect."""
        err = self.zc.oracle.error
        if err is not None and err is not self._stream_error:
            self._stream_error = err
            self.log.warning("the Oracle stream stopped; following it again from now", error=str(err))
            await self.sync()
        now = self._clock()
        stale = sorted(ts for ts, p in self.pending.items() if now - p.since >= self.pending_check)
        if stale:
            await self.resolve(stale, abort=False)
            old = [ts for ts in stale if ts in self.pending and now - self.pending[ts].since >= self.pending_timeout]
            if old:
                self.log.info("aborting transactions whose writes waited too long for a decision", start_ts=old[:10],
                              count=len(old))
                await self.resolve(old, abort=True)
        await self.collect()
        if self.plog.resolved >= 10_000:
            await self.flusher.compact()

    async def collect(self) -> None:
        safe = self.zc.oracle.safe_ts
        if safe <= self.collected_at:
            return
        if self.store.data_dir:
            await asyncio.to_thread(self.store.raise_floor, safe)
        else:
            self.store.raise_floor(safe)
        self.collected_at = safe
        self.store.collect(safe)
        for tablet in self.store.bloated():
            await asyncio.to_thread(self.store.rewrite, tablet, safe)

    async def close(self) -> None:
        await self.flusher.close()

    def _live(self) -> dict[int, list[Write]]:
        return {ts: [(t, k, v) for (t, k), v in p.writes.items()] for ts, p in self.pending.items()}

    def _disk_failed(self, e: BaseException) -> None:
        self.log.error("writing to the data dir failed", error=repr(e))

