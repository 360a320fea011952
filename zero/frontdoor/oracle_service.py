"""The oracle's RPCs (SPEC "Transactions: the oracle"): CommitOrAbort, CommitStream,
TryAbort, TxnStatus and the Oracle stream, served by the leader (a follower's
interceptor forwards them, so a follower relays the leader's stream).

The Oracle stream starts with every retained commit above `since_ts` (read from the
replicated state, so it survives leader changes), then carries the decisions as they
are applied and the max_assigned watermark as it moves. A subscriber is registered
before the history is read, in one step of the event loop, so nothing falls between the
two; commits the history already carried are not sent again. A subscriber that falls
QUEUE_LIMIT deltas behind is dropped (RESOURCE_EXHAUSTED) and resumes with since_ts =
the last max_assigned it saw; a leadership change ends every stream (UNAVAILABLE) and
the client resumes on the new leader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from zero.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    ZeroError,
)
from zero.leader.oracle import Oracle
from zero.pb import zero_pb2

__all__ = ["OracleHub", "OracleMethods", "QUEUE_LIMIT", "HISTORY_CHUNK", "READY_TIMEOUT"]

QUEUE_LIMIT = 1024       # deltas a subscriber may fall behind before it is dropped
HISTORY_CHUNK = 10_000   # commits per message of the history a resuming subscriber gets
READY_TIMEOUT = 5.0      # seconds a call waits for a new leader to serve the oracle
MAX_IDS = 100_000        # start_ts per TryAbort / TxnStatus
BATCHES_AHEAD = 256      # CommitStream batches being decided at once, per stream

_END = object()


class _Subscriber:
    __slots__ = ("queue", "sent_commit_ts", "error")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[zero_pb2.OracleDelta | object] = asyncio.Queue()
        self.sent_commit_ts = 0
        self.error: ZeroError | None = None


class OracleHub:
    """The leader's Oracle-stream subscribers. Wire `publish` as a sink of the Oracle and
    `on_leadership` to the node's leadership callbacks."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self._subs: set[_Subscriber] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, delta: zero_pb2.OracleDelta) -> None:
        for s in list(self._subs):
            if s.queue.qsize() >= QUEUE_LIMIT:
                self._end(s, ResourceExhaustedError(
                    f"this Oracle stream fell {QUEUE_LIMIT} updates behind; resume with since_ts"))
            else:
                s.queue.put_nowait(delta)

    def on_leadership(self, leader: bool, term: int) -> None:
        for s in list(self._subs):
            self._end(s, UnavailableError("leadership changed; resume the Oracle stream with since_ts"))

    def _end(self, s: _Subscriber, error: ZeroError) -> None:
        s.error = error
        s.queue.put_nowait(_END)
        self._subs.discard(s)

    async def serve(self, since_ts: int) -> AsyncIterator[zero_pb2.OracleDelta]:
        await self.oracle.wait_ready(READY_TIMEOUT)
        oracle_state = self.oracle.node.state.oracle
        if since_ts and since_ts < oracle_state.purged_below:
            raise FailedPreconditionError(
                f"since_ts {since_ts} is older than the oracle keeps (decisions below {oracle_state.purged_below} "
                f"were purged): read a fresh snapshot and subscribe from its timestamp")
        sub = _Subscriber()
        self._subs.add(sub)
        try:
            history = list(oracle_state.commits_after(since_ts))
            max_assigned = self.oracle.max_assigned()
            if history:
                sub.sent_commit_ts = history[-1].commit_ts
            chunks = [history[i:i + HISTORY_CHUNK] for i in range(0, len(history), HISTORY_CHUNK)] or [[]]
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                # The watermark travels with the last chunk only: every commit below it is sent by then.
                yield zero_pb2.OracleDelta(txns=chunk, max_assigned=max_assigned if last else 0,
                                           safe_ts=oracle_state.safe_ts)
            while True:
                item = await sub.queue.get()
                if item is _END:
                    assert sub.error is not None
                    raise sub.error
                assert isinstance(item, zero_pb2.OracleDelta)
                yield _unsent(item, sub)
        finally:
            self._subs.discard(sub)


def _unsent(delta: zero_pb2.OracleDelta, sub: _Subscriber) -> zero_pb2.OracleDelta:
    """`delta` without the commits this subscriber already got (from its history)."""
    floor = sub.sent_commit_ts
    if delta.txns and any(t.commit_ts and t.commit_ts <= floor for t in delta.txns):
        out = zero_pb2.OracleDelta(max_assigned=delta.max_assigned, safe_ts=delta.safe_ts)
        out.txns.extend(t for t in delta.txns if not t.commit_ts or t.commit_ts > floor)
        delta = out
    for t in delta.txns:
        if t.commit_ts > sub.sent_commit_ts:
            sub.sent_commit_ts = t.commit_ts
    return delta


def _raise_refusal(r: zero_pb2.CommitResponse) -> zero_pb2.CommitResponse:
    """A unary call's refusal is its gRPC status; a decision is its answer."""
    if r.code == 0:
        return r
    cls: type[ZeroError] = {3: InvalidArgumentError, 9: FailedPreconditionError}.get(r.code, UnavailableError)
    raise cls(r.message)


def _check_ids(ids: Sequence[int]) -> None:
    if len(ids) > MAX_IDS:
        raise InvalidArgumentError(f"{len(ids)} start_ts in one call; at most {MAX_IDS:,}")
    if any(ts == 0 for ts in ids):
        raise InvalidArgumentError("start_ts 0 is not a timestamp zero hands out")


class OracleMethods:
    """The oracle's methods of the Zero service (mixed into ZeroService)."""

    oracle: Oracle
    oracle_hub: OracleHub

    async def CommitOrAbort(self, request: zero_pb2.CommitRequest, context: object) -> zero_pb2.CommitResponse:
        await self.oracle.wait_ready(READY_TIMEOUT)
        return _raise_refusal((await self.oracle.commit([request]))[0])

    async def CommitStream(self, requests: AsyncIterator[zero_pb2.CommitBatch],
                           context: object) -> AsyncIterator[zero_pb2.CommitBatchResponse]:
        """Batches are decided concurrently and answered as they complete; a bad request
        is answered with its code and the stream stays open."""
        await self.oracle.wait_ready(READY_TIMEOUT)
        done: asyncio.Queue[zero_pb2.CommitBatchResponse | BaseException | None] = asyncio.Queue()
        inflight: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()

        async def decide(batch: zero_pb2.CommitBatch) -> None:
            try:
                txns = await self.oracle.commit(batch.txns)
                done.put_nowait(zero_pb2.CommitBatchResponse(txns=txns))
            except BaseException as e:  # ended by leadership loss: the whole stream ends
                done.put_nowait(e)

        async def read() -> None:
            try:
                async for batch in requests:
                    while len(inflight) >= BATCHES_AHEAD:  # flow control holds a client that runs ahead
                        await asyncio.wait(set(inflight), return_when=asyncio.FIRST_COMPLETED)
                    t = loop.create_task(decide(batch))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
                while inflight:
                    await asyncio.wait(set(inflight))
                done.put_nowait(None)
            except Exception as e:  # noqa: BLE001 - the stream ends with it
                done.put_nowait(e)

        reader = loop.create_task(read())
        try:
            while True:
                item = await done.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            for t in inflight:
                t.cancel()

    async def TryAbort(self, request: zero_pb2.TryAbortRequest, context: object) -> zero_pb2.TryAbortResponse:
        _check_ids(request.start_ts)
        await self.oracle.wait_ready(READY_TIMEOUT)
        return zero_pb2.TryAbortResponse(txns=await self.oracle.try_abort(request.start_ts))

    async def TxnStatus(self, request: zero_pb2.TryAbortRequest, context: object) -> zero_pb2.TryAbortResponse:
        _check_ids(request.start_ts)
        await self.oracle.wait_ready(READY_TIMEOUT)
        return zero_pb2.TryAbortResponse(txns=await self.oracle.status(request.start_ts))

    async def Oracle(self, request: zero_pb2.OracleRequest, context: object) -> AsyncIterator[zero_pb2.OracleDelta]:
        async for delta in self.oracle_hub.serve(request.since_ts):
            yield delta

