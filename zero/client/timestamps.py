"""Merged timestamps: concurrent callers of ZeroClient.timestamp() share requests on one
long-lived TimestampStream, as TiKV PD's TSO client does; unary Timestamps RPCs against a
zero without the stream (an older release)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import grpc

from zero.client.router import RETRYABLE, Router
from zero.pb import zero_pb2
from zero.rpc import code_of

__all__ = ["TimestampBatcher", "MAX_COUNT"]

MAX_COUNT = 1_000_000  # timestamps in one request (the most a zero hands out at once)


class TimestampBatcher:
    """The callers waiting for a timestamp, and the stream (or the unary RPCs) that
    answers them in batches; `timestamp` says what a caller is guaranteed."""

    def __init__(self, router: Router, *, pipeline: int) -> None:
        self._router = router
        self._waiting: list[asyncio.Future[int]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # unary Timestamps RPCs in flight
        self._stream_task: asyncio.Task[None] | None = None  # drives the TimestampStream
        self._use_stream = True  # False once a zero answered UNIMPLEMENTED (an older zero)
        self._wake = asyncio.Event()  # callers are waiting, or a request slot freed up
        self._answered = False  # the stream answered since the last failure
        self.pipeline = pipeline  # requests outstanding at most
        self.rpcs = 0  # timestamp requests answered (stream messages or unary RPCs)

    @property
    def over_stream(self) -> bool:
        """False once a zero answered the stream UNIMPLEMENTED: unary RPCs from then on."""
        return self._use_stream

    async def close(self) -> None:
        """Stop the stream and the unary RPCs; callers still waiting get RuntimeError."""
        for t in (self._stream_task, *self._tasks):
            if t is not None:
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        for f in self._waiting:
            if not f.done():
                f.set_exception(RuntimeError("ZeroClient closed"))

    async def timestamp(self) -> int:
        """One timestamp, strictly larger than any timestamp handed out before this
        call began.

        Concurrent callers share requests: the callers waiting when a request is sent go
        in it, one request message on the client's TimestampStream (opened lazily on the
        current target, normally the leader; a follower relays it one hop), with at most
        `pipeline` requests outstanding. A caller that arrives after another caller's
        batch completed is always in a later request — the batch completes only when its
        answer was read, so the later request is written after the zero handed that range
        out — and zero answers every request after a ReadIndex round that began after the
        request arrived, so the later caller gets a larger timestamp. A request retried
        after a failure (on a new stream, possibly at a new leader) is a new request sent
        later still, so the same holds. Against a zero that answers UNIMPLEMENTED (an
        older release) the batcher falls back to unary Timestamps RPCs, merged the same way.
        """
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        if not self._use_stream:
            self._pump()
        elif self._stream_task is None or self._stream_task.done():
            if not self._router.closed:
                self._stream_task = asyncio.get_running_loop().create_task(self._stream_run())
        else:
            self._wake.set()
        return await fut

    def _fail(self, err: BaseException) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()  # in place: a stream session holds the list
        for f in waiting:
            if not f.done():
                f.set_exception(err)

    async def _stream_run(self) -> None:
        """Keep a TimestampStream open while callers wait; on a failure, retry the
        unanswered callers as Router.call retries a unary RPC: UNAVAILABLE (and a stream
        that stopped answering within `rpc_timeout`) with backoff and the leader
        redirect, on a new stream, until `retry_deadline` passes without an answer; any
        other error fails them."""
        loop = asyncio.get_running_loop()
        router = self._router
        attempt = 0
        deadline: float | None = None
        while self._waiting and not router.closed:
            try:
                await self._stream_session()
                err: grpc.aio.AioRpcError = grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details="the zero ended the timestamp stream")
            except grpc.aio.AioRpcError as e:
                err = e
            except Exception as e:  # noqa: BLE001 - not an RPC outcome (a closed channel): the waiters get it
                self._fail(e)
                return
            if self._answered:
                self._answered, attempt, deadline = False, 0, None
            code = code_of(err)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self._use_stream = False  # an older zero: unary Timestamps from now on
                self._pump()
                return
            now = loop.time()
            if deadline is None:
                deadline = now + router.retry_deadline
            if (code not in RETRYABLE and code != grpc.StatusCode.DEADLINE_EXCEEDED) or router.closed \
                    or now >= deadline:
                self._fail(err)
                attempt, deadline = 0, None
                continue
            if not self._waiting:
                return  # nobody waits: the next caller opens a new stream
            router.redirect(err)
            await router.backoff(attempt)
            attempt += 1

    async def _stream_session(self) -> None:
        """One TimestampStream, until it fails (raises AioRpcError) or the zero ends it.
        Requests outstanding when it ends go back, in order, to the front of the queue."""
        loop = asyncio.get_running_loop()
        waiting, wake = self._waiting, self._wake
        router = self._router
        pipeline = max(1, self.pipeline)
        sent: deque[tuple[float, list[asyncio.Future[int]]]] = deque()
        live = True  # an ended session's request generator may still wake: it must take nobody

        async def requests() -> AsyncIterator[zero_pb2.TimestampsRequest]:
            while live:
                if not waiting or len(sent) >= pipeline:
                    wake.clear()
                    await wake.wait()
                    continue
                batch = waiting[:MAX_COUNT]
                del waiting[:MAX_COUNT]
                sent.append((loop.time(), batch))
                yield zero_pb2.TimestampsRequest(count=len(batch))

        call: grpc.aio.StreamStreamCall[zero_pb2.TimestampsRequest, zero_pb2.AssignedIds] = \
            router.stub().TimestampStream(requests())
        # A zero that stops answering (paused, cut off) must not hold callers forever: the
        # oldest outstanding request gets `rpc_timeout`, as a unary RPC would.
        timed_out = False
        watchdog: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timed_out, watchdog
            if sent and loop.time() - sent[0][0] > router.rpc_timeout:
                timed_out = True
                call.cancel()
            else:
                watchdog = loop.call_later(router.rpc_timeout / 4, check)

        watchdog = loop.call_later(router.rpc_timeout / 4, check)
        try:
            async for r in call:
                _, batch = sent.popleft()
                self.rpcs += 1
                self._answered = True
                start = r.start_id
                for i, f in enumerate(batch):
                    if not f.done():
                        f.set_result(start + i)
                if waiting:
                    wake.set()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not timed_out or (task is not None and task.cancelling()):
                raise
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=f"no timestamp answer within {router.rpc_timeout}s") from None
        finally:
            live = False
            wake.set()
            if watchdog is not None:
                watchdog.cancel()
            call.cancel()
            waiting[:0] = [f for _, b in sent for f in b if not f.done()]
            sent.clear()

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and len(self._tasks) < self.pipeline and not self._router.closed:
            batch = self._waiting[:MAX_COUNT]
            del self._waiting[:MAX_COUNT]
            t = loop.create_task(self._unary(batch))
            self._tasks.add(t)
            t.add_done_callback(self._unary_done)

    def _unary_done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        if not self._router.closed:
            self._pump()

    async def _unary(self, batch: list[asyncio.Future[int]]) -> None:
        try:
            r: zero_pb2.AssignedIds = await self._router.call(
                "Timestamps", zero_pb2.TimestampsRequest(count=len(batch)))
            self.rpcs += 1
        except Exception as e:  # noqa: BLE001 - every waiter gets the error
            for f in batch:
                if not f.done():
                    f.set_exception(e)
            return
        for i, f in enumerate(batch):
            if not f.done():
                f.set_result(r.start_id + i)
