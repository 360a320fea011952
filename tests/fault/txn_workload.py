"""The transactional workloads' client side (bank.py, list_append.py): an asyncio loop in
a thread runs the clients through zero.client and zero/datanode/txn.py, as an
application would, plus subscribers of the Oracle stream and a resolver that asks zero
for the decision of every transaction recorded. Every transaction is one history op.

A transaction op is invoked before its timestamp is asked for, records `start_ts` (its
read timestamp) and ends
    ok    committed: `commit_ts` (a snapshot: read, nothing to commit)
    fail  aborted (`reason`), or it failed before its commit was asked (`phase`: "begin"
          or "read")
    info  the commit's outcome is unknown (an error or a timeout while committing)
and the resolver adds `status`: zero's TxnStatus answer about a second after the op
ended, asked again while undecided, and forced with TryAbort at the end (`finish`):
{"commit_ts": c} or {"aborted": reason} ({"purged": message}: zero no longer knows).
So every transaction ends with a decision, and the checkers compare the client's with
zero's (txn_checks.decisions).

A subscriber follows the Oracle stream on a random zero (a follower relays the
leader's), resuming from the last max_assigned it saw on another zero after any error.
Each stream is one op, f="oracle", value {"since": s, "events": [...]} with events
["c", start_ts, commit_ts], ["a", start_ts], ["m", max_assigned] and ["s", safe_ts] (when
it changed) in arrival order (txn_checks.watermark).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc

from zero.client import CommitRefused, ZeroClient
from zero.datanode.txn import Txn, TxnClient
from zero.pb import zero_pb2, zero_pb2_grpc

from .history import FAIL, INFO, OK, History, Op

__all__ = ["TxnWorkload", "Step", "run_txn", "TXN_TIMEOUT"]

TXN_TIMEOUT = 8.0      # one transaction, reads to decision; past it the op is indeterminate
RESOLVE_AFTER = 1.0    # seconds after an op ended before zero is asked for its decision
RESOLVE_BATCH = 2_000

# A client step: given the workload's TxnClient and rng, make one recorded call.
Step = Callable[["TxnWorkload", TxnClient, random.Random, str], Awaitable[None]]


def _err(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "DEADLINE_EXCEEDED: the transaction took longer than the workload waits"
    return repr(e)


async def run_txn(h: History, process: str, f: str, begin: Callable[[], Awaitable[Txn]],
                  body: Callable[[Txn], Awaitable[dict[str, Any]]], **args: Any) -> Op:
    """One op: `begin()` (the transaction's timestamp: the op is invoked before it is
    asked for, so real-time order is judged from the request), `body(txn)` (reads and
    buffered writes; returns what to record), then the commit. See the module doc for
    the outcomes; a begin that failed is `fail` with phase "begin" (no start_ts)."""
    op = h.begin(process, f, **args)
    try:
        async with asyncio.timeout(TXN_TIMEOUT):
            txn = await begin()
    except (grpc.aio.AioRpcError, TimeoutError) as e:
        return h.end(op, FAIL, {"phase": "begin"}, error=_err(e))
    op.value = {"start_ts": txn.start_ts}
    committing = False
    try:
        async with asyncio.timeout(TXN_TIMEOUT):
            op.value.update(await body(txn))
            if txn.read_only:
                return h.end(op, OK, op.value)  # a snapshot: nothing to commit
            committing = True
            d = await txn.commit()
    except (grpc.aio.AioRpcError, CommitRefused, TimeoutError) as e:
        if committing:
            h.end(op, INFO, op.value, error=_err(e))
        else:
            h.end(op, FAIL, {**op.value, "phase": "read"}, error=_err(e))
        return op
    if d.aborted:
        h.end(op, FAIL, {**op.value, "reason": zero_pb2.AbortReason.Name(d.reason)}, error=d.message)
    else:
        h.end(op, OK, {**op.value, "commit_ts": d.commit_ts})
    return op


class TxnWorkload(threading.Thread):
    """`clients` tasks calling `step` in a loop, `subscribers` Oracle-stream followers and
    the resolver, on their own event loop until `stop()`; then `finish()` decides what is
    left (TryAbort) and records it."""

    def __init__(self, zeros: Sequence[str], history: History, seed: int, step: Step, *, clients: int = 4,
                 subscribers: int = 2, think: float = 0.0) -> None:
        super().__init__(name="txn-workload", daemon=True)
        self.zeros = list(zeros)
        self.h = history
        self.rng = random.Random(seed)
        self.step = step
        self.clients = clients
        self.subscribers = subscribers
        self.think = think
        self.loop: asyncio.AbstractEventLoop | None = None
        self._halt = threading.Event()
        self._up = threading.Event()
        self.error: BaseException | None = None
        self.zc: ZeroClient | None = None
        self.tc: TxnClient | None = None
        self.state: dict[str, Any] = {}  # what the steps share (the bank's accounts, ...)
        self._resolve: list[tuple[float, Op]] = []  # (due, op)
        self._clients_on = True
        self.tracked: list[Op] = []  # every transaction op the resolver follows
        self._resolver_task: asyncio.Task[None] | None = None
        self.client_tasks: list[asyncio.Task[None]] = []
        self.safe_ts = 0  # the highest safe_ts a subscriber heard

    # -- lifetime -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by the run
            self.error = e
        finally:
            self._up.set()

    def wait_ready(self, timeout: float) -> None:
        if not self._up.wait(timeout) or self.error is not None:
            raise AssertionError(f"the transactional workload did not start: {self.error!r}")

    def call(self, fn: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
        """Run `fn()` on the workload's loop from another thread."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def stop(self) -> None:
        self._halt.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        zc = self.zc = ZeroClient(self.zeros, rpc_timeout=1.0, retry_deadline=3.0)
        zc.start_watch()
        await zc.wait_synced(30)
        self.tc = TxnClient(zc, rpc_timeout=2.0, retry_deadline=2.0)
        self._running = asyncio.Event()
        self._up.set()
        tasks: list[asyncio.Task[None]] = []
        try:
            while not self._halt.is_set():
                if self._running.is_set() and not tasks:
                    self.client_tasks = [asyncio.ensure_future(self._client(f"c{i}", random.Random(self.rng.random())))
                                         for i in range(self.clients)]
                    self._resolver_task = asyncio.ensure_future(self._resolver())
                    tasks = [*self.client_tasks, self._resolver_task]
                    tasks += [asyncio.ensure_future(self._subscriber(f"s{i}", random.Random(self.rng.random())))
                              for i in range(self.subscribers)]
                await asyncio.sleep(0.05)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.tc.close()
            await zc.close()

    def start_clients(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._running.set)

    def stop_clients(self, timeout: float = TXN_TIMEOUT + 5) -> None:
        """Let each client finish its transaction and stop (the subscribers go on)."""
        self._clients_on = False

        async def joined() -> None:
            if self.client_tasks:
                await asyncio.wait(self.client_tasks, timeout=timeout)
        self.call(joined, timeout + 5)

    # -- clients ------------------------------------------------------------------------------------
    async def _client(self, name: str, rng: random.Random) -> None:
        assert self.tc is not None
        while self._clients_on:
            try:
                await self.step(self, self.tc, rng, name)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a workload bug must not pass silently
                self.h.end(self.h.begin(name, "crash"), FAIL, error=repr(e))
                await asyncio.sleep(0.1)
            if self.think:
                await asyncio.sleep(rng.uniform(0, self.think))

    def track(self, op: Op) -> None:
        """Have the resolver ask zero for this transaction's decision."""
        if op.value.get("start_ts"):
            self.tracked.append(op)
            self._resolve.append((time.monotonic() + RESOLVE_AFTER, op))

    async def _resolver(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            due = [op for t, op in self._resolve if t <= now]
            if not due:
                continue
            self._resolve = [(t, op) for t, op in self._resolve if t > now]
            await self._ask(due, abort=False)

    async def _ask(self, ops: list[Op], *, abort: bool) -> None:
        """Record zero's decision on each op; undecided ones are asked again later."""
        assert self.zc is not None
        for i in range(0, len(ops), RESOLVE_BATCH):
            part = ops[i:i + RESOLVE_BATCH]
            ids = [o.value["start_ts"] for o in part]
            try:
                answers = await (self.zc.try_abort(ids) if abort else self.zc.txn_status(ids))
            except grpc.aio.AioRpcError:
                self._resolve += [(time.monotonic() + 1.0, o) for o in part]
                continue
            for o, r in zip(part, answers):
                if r.code == 9:
                    o.value["status"] = {"purged": r.message}
                elif r.code:
                    self._resolve.append((time.monotonic() + 1.0, o))
                elif r.aborted:
                    o.value["status"] = {"aborted": zero_pb2.AbortReason.Name(r.reason)}
                elif r.commit_ts:
                    o.value["status"] = {"commit_ts": r.commit_ts}
                else:
                    o.value["undecided"] = o.value.get("undecided", 0) + 1
                    self._resolve.append((time.monotonic() + 2.0, o))

    def finish(self, timeout: float = 60.0) -> int:
        """Decide every tracked transaction still undecided (TryAbort) and record it;
        how many were left. Run after the clients stopped."""
        async def go() -> int:
            if self._resolver_task is not None:
                self._resolver_task.cancel()
                await asyncio.gather(self._resolver_task, return_exceptions=True)
            deadline = time.monotonic() + timeout
            left = [op for op in self.tracked if "status" not in op.value]
            n = len(left)
            while left and time.monotonic() < deadline:
                self._resolve = []
                await self._ask(left, abort=True)
                left = [op for op in self.tracked if "status" not in op.value]
                if left:
                    await asyncio.sleep(0.5)
            return n
        return int(self.call(go, timeout + 10))

    # -- Oracle stream subscribers --------------------------------------------------------------------
    async def _subscriber(self, name: str, rng: random.Random) -> None:
        since = 0
        chans = [grpc.aio.insecure_channel(a) for a in self.zeros]
        try:
            while True:
                i = rng.randrange(len(chans))
                op = self.h.begin(name, "oracle", zero=i, since=since)
                events: list[list[int | str]] = []
                safe = 0
                err = "CANCELLED: the run ended"
                try:
                    async for delta in zero_pb2_grpc.ZeroStub(chans[i]).Oracle(zero_pb2.OracleRequest(since_ts=since)):
                        for t in delta.txns:
                            events.append(["a", t.start_ts] if t.aborted else ["c", t.start_ts, t.commit_ts])
                        if delta.max_assigned:
                            events.append(["m", delta.max_assigned])
                            since = max(since, delta.max_assigned)
                        if delta.safe_ts != safe:
                            safe = delta.safe_ts
                            events.append(["s", safe])
                            self.safe_ts = max(self.safe_ts, safe)
                    err = "the stream ended"
                except grpc.aio.AioRpcError as e:
                    err = _err(e)
                    if e.code() == grpc.StatusCode.FAILED_PRECONDITION:  # purged below since: start afresh
                        assert self.zc is not None
                        try:
                            since = await self.zc.read_timestamp()
                        except grpc.aio.AioRpcError:
                            pass
                finally:
                    self.h.end(op, OK if events else INFO, {"since": op.args["since"], "events": events},
                               error=err if not events else "")
                await asyncio.sleep(rng.uniform(0.05, 0.3))
        finally:
            for ch in chans:
                await ch.close()
