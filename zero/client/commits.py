"""Merged commits and the oracle's watermark, as a data node uses them.

CommitBatcher: concurrent callers of ZeroClient.commit() share CommitBatches on one
long-lived CommitStream (as timestamps share requests on TimestampStream): the callers
waiting when a batch is sent go in it, with at most `pipeline` batches outstanding;
answers come back in any order and are matched by start_ts. A stream that fails is
reopened (at the leader it names) and the unanswered requests are sent again: a
decision is final, so a request decided before the failure gets the same decision.

OracleWatcher: one Oracle stream, resumed from the last max_assigned seen after any
failure; it keeps max_assigned and safe_ts, wakes wait_for_ts() callers once
max_assigned reaches their read timestamp, and hands every delta to a listener (a
data node applies the commits in order from it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from zero.client.router import RETRYABLE, Router
from zero.pb import zero_pb2
from zero.rpc import code_of

__all__ = ["CommitBatcher", "OracleWatcher", "CommitRefused", "MAX_BATCH", "commit_request"]

MAX_BATCH = 1024  # transactions per CommitBatch


class CommitRefused(Exception):
    """zero refused a commit request and decided nothing (bad input, a purged decision):
    `code` is the gRPC status code, the message says why."""

    def __init__(self, response: zero_pb2.CommitResponse) -> None:
        super().__init__(f"{_CODE_NAMES.get(response.code, str(response.code))}: {response.message}")
        self.code = response.code
        self.response = response


_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


class CommitBatcher:
    def __init__(self, router: Router, *, pipeline: int = 4) -> None:
        self._router = router
        self.pipeline = pipeline
        self._waiting: list[tuple[zero_pb2.CommitRequest, asyncio.Future[zero_pb2.CommitResponse]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # CommitBatches answered

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for _, f in self._waiting:
            if not f.done():
                f.set_exception(RuntimeError("ZeroClient closed"))

    async def commit(self, request: zero_pb2.CommitRequest) -> zero_pb2.CommitResponse:
        """The decision; CommitRefused when nothing was decided."""
        fut: asyncio.Future[zero_pb2.CommitResponse] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, fut))
        if self._task is None or self._task.done():
            if not self._router.closed:
                self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            self._wake.set()
        r = await fut
        if r.code:
            raise CommitRefused(r)
        return r

    def _fail(self, err: BaseException) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        for _, f in waiting:
            if not f.done():
                f.set_exception(err)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        router = self._router
        attempt = 0
        deadline: float | None = None
        while self._waiting and not router.closed:
            answered = False
            try:
                answered = await self._session()
                err: grpc.aio.AioRpcError = grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details="the zero ended the commit stream")
            except grpc.aio.AioRpcError as e:
                err = e
            except Exception as e:  # noqa: BLE001 - not an RPC outcome: the waiters get it
                self._fail(e)
                return
            if answered:
                attempt, deadline = 0, None
            if not self._waiting:
                return
            now = loop.time()
            if deadline is None:
                deadline = now + router.retry_deadline
            if (code_of(err) not in RETRYABLE and err.code() != grpc.StatusCode.DEADLINE_EXCEEDED) \
                    or router.closed or now >= deadline:
                self._fail(err)
                continue
            router.redirect(err)
            await router.backoff(attempt)
            attempt += 1

    async def _session(self) -> bool:
        """One CommitStream until it fails; unanswered requests go back to the front."""
        waiting, wake = self._waiting, self._wake
        sent: dict[int, list[asyncio.Future[zero_pb2.CommitResponse]]] = {}  # start_ts -> waiters
        requests_of: dict[int, zero_pb2.CommitRequest] = {}
        outstanding = 0
        live = True
        answered = False

        async def batches() -> AsyncIterator[zero_pb2.CommitBatch]:
            nonlocal outstanding
            while live:
                if not waiting or outstanding >= self.pipeline:
                    wake.clear()
                    await wake.wait()
                    continue
                take = waiting[:MAX_BATCH]
                del waiting[:MAX_BATCH]
                batch = zero_pb2.CommitBatch()
                for req, fut in take:
                    if req.start_ts not in sent:
                        batch.txns.append(req)
                        requests_of[req.start_ts] = req
                    sent.setdefault(req.start_ts, []).append(fut)
                outstanding += 1
                yield batch

        call = self._router.stub().CommitStream(batches())
        try:
            async for resp in call:
                outstanding -= 1
                answered = True
                self.batches += 1
                for r in resp.txns:
                    requests_of.pop(r.start_ts, None)
                    for f in sent.pop(r.start_ts, ()):
                        if not f.done():
                            f.set_result(r)
                wake.set()
        finally:
            live = False
            wake.set()
            call.cancel()
            waiting[:0] = [(requests_of[ts], f) for ts, fs in sent.items() for f in fs if not f.done()]
        return answered


class OracleWatcher:
    """The Oracle stream of one client: max_assigned, safe_ts, and the deltas."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self.max_assigned = 0
        self.safe_ts = 0
        self.listeners: list[Callable[[zero_pb2.OracleDelta], None]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # why the stream stopped for good, if it did

    def start(self, since_ts: int = 0) -> None:
        if self._task is None or self._task.done():
            self.max_assigned = max(self.max_assigned, since_ts)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for _, f in self._waiters:
            if not f.done():
                f.set_exception(RuntimeError("ZeroClient closed"))

    async def wait_for(self, read_ts: int, timeout: float | None = None) -> None:
        """Until every commit at or below `read_ts` is known (max_assigned >= read_ts)."""
        if self.max_assigned >= read_ts:
            return
        self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((read_ts, fut))
        async with asyncio.timeout(timeout):
            await fut

    def _deliver(self, delta: zero_pb2.OracleDelta) -> None:
        for cb in self.listeners:
            cb(delta)
        if delta.safe_ts > self.safe_ts:
            self.safe_ts = delta.safe_ts
        if delta.max_assigned > self.max_assigned:
            self.max_assigned = delta.max_assigned
            keep = []
            for ts, f in self._waiters:
                if ts <= self.max_assigned:
                    if not f.done():
                        f.set_result(None)
                else:
                    keep.append((ts, f))
            self._waiters = keep

    async def _run(self) -> None:
        router = self._router
        attempt = 0
        while not router.closed:
            try:
                call = router.stub().Oracle(zero_pb2.OracleRequest(since_ts=self.max_assigned))
                async for delta in call:
                    attempt = 0
                    self._deliver(delta)
                err: grpc.aio.AioRpcError = grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details="the zero ended the Oracle stream")
            except grpc.aio.AioRpcError as e:
                err = e
            code = code_of(err)
            if code not in RETRYABLE and code not in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                      grpc.StatusCode.RESOURCE_EXHAUSTED):
                self.error = err
                for _, f in self._waiters:
                    if not f.done():
                        f.set_exception(err)
                self._waiters.clear()
                return
            router.redirect(err)
            await router.backoff(attempt)
            attempt = min(attempt + 1, 5)


def commit_request(start_ts: int, keys: Sequence[int], writes: Sequence[tuple[str, int]],
                 abort: bool = False) -> zero_pb2.CommitRequest:
    return zero_pb2.CommitRequest(start_ts=start_ts, conflict_keys=list(keys), abort=abort,
                                  writes=[zero_pb2.TxnWrite(predicate=p, group_id=g) for p, g in writes])
