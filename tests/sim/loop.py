"""A deterministic asyncio event loop on virtual time, and the clock the zeros read.

`SimLoop` is asyncio's own BaseEventLoop (its tasks, futures, handles and ready queue)
with three things replaced:
- time: `time()` is a virtual clock that jumps straight to the next timer whenever
  nothing is ready. A run with nothing ready and no timer is a deadlock: it raises.
- the scheduling core: `call_soon`/`call_at`/`_run_once` without I/O polling, debug
  checks or thread safety, the timer heap keyed by (when, sequence) tuples (compared
  in C; timers due at one instant fire in the order they were set).
- threads: `run_in_executor` runs the function on the loop itself, after a seeded
  latency (a simulated fsync), one job at a time per executor in submission order — as
  the WAL's single worker thread would. No thread is ever started.

Tasks are attributed to an owner (a zero incarnation, a client) through a context
variable, so a crash can cancel every task of one zero and nothing else, and a pause
(SIGSTOP) can hold back every callback of one zero while virtual time goes on: its
ready handles and timers are taken out of the loop, whatever it schedules meanwhile
(task steps, timers, messages delivered to it, WAL jobs) is held too, and `resume`
(SIGCONT) puts them back — timers that came due meanwhile fire at once, in order.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import random
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["SimLoop", "SimClock", "Deadlock", "OWNER", "EPOCH"]

T = TypeVar("T")
EPOCH = 1_700_000_000.0  # what the simulated wall clock reads at virtual time 0
OWNER: contextvars.ContextVar[str] = contextvars.ContextVar("sim_owner", default="")


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is set: the run can never make progress."""


class SimLoop(asyncio.BaseEventLoop):
    """See the module doc. The scheduling core (`call_soon`, `call_at`, `_run_once`) is
    asyncio's own cut down to what a loop without I/O, threads or debug mode needs, with
    the timer heap keyed by (when, sequence) tuples: compared in C, and timers due at
    the same instant fire in the order they were set."""

    def __init__(self, rng: random.Random, *, disk_latency: tuple[float, float] = (0.0005, 0.004)) -> None:
        super().__init__()
        self.now = 0.0
        self._clock_resolution = 1e-9
        self.rng = rng
        self.disk_latency = disk_latency
        self._busy_until: dict[int, float] = {}  # id(executor) -> when its queue is empty
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []  # a heap
        self._seq = itertools.count().__next__
        self._cancelled_timers = 0
        self.owned: dict[str, list[asyncio.Task[Any]]] = {}  # owner -> its tasks (and some done ones), in creation order
        self._prune_at: dict[str, int] = {}
        self.paused: dict[str, list[asyncio.Handle]] = {}  # owner -> its held handles, in scheduling order

    def time(self) -> float:
        return self.now

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        pass  # nothing runs in another thread

    # -- the scheduling core ----------------------------------------------------------------------
    def call_soon(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        h = asyncio.Handle(callback, args, self, context)
        self._ready.append(h)  # type: ignore[attr-defined]
        return h

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        h = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, self._seq(), h))
        h._scheduled = True  # type: ignore[attr-defined]
        return h

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                   context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        return self.call_at(self.now + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        if handle._scheduled:  # type: ignore[attr-defined]
            self._cancelled_timers += 1

    def _run_once(self) -> None:
        """Run what is ready; with nothing ready, jump to the first timer (none: Deadlock)."""
        timers = self._timers
        ready: Any = self._ready  # type: ignore[attr-defined]
        if self._cancelled_timers > 64 and 2 * self._cancelled_timers > len(timers):
            timers = self._timers = [t for t in timers if not t[2].cancelled()]
            heapq.heapify(timers)
            self._cancelled_timers = 0
        if not ready and not self._stopping:  # type: ignore[attr-defined]
            while timers and timers[0][2].cancelled():
                heapq.heappop(timers)[2]._scheduled = False  # type: ignore[attr-defined]
                self._cancelled_timers -= 1
            if not timers:
                raise Deadlock("nothing is ready and no timer is set")
            if timers[0][0] > self.now:
                self.now = timers[0][0]
        end = self.now + 1e-9
        while timers and timers[0][0] < end:
            h = heapq.heappop(timers)[2]
            h._scheduled = False  # type: ignore[attr-defined]
            if h.cancelled():
                self._cancelled_timers -= 1
            else:
                ready.append(h)
        for _ in range(len(ready)):
            h = ready.popleft()
            if not h._cancelled:
                h._run()

    def close(self) -> None:
        self._timers.clear()
        super().close()

    def create_task(self, coro: Coroutine[Any, Any, T], *, name: str | None = None,  # type: ignore[override]
                    context: contextvars.Context | None = None) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        owner = context.get(OWNER, "") if context is not None else OWNER.get()
        if owner:
            # No done callback (it would cost a handle per task): finished tasks are
            # pruned when the list has doubled since the last prune.
            tasks = self.owned.get(owner)
            if tasks is None:
                tasks = self.owned[owner] = []
                self._prune_at[owner] = 64
            tasks.append(task)
            if len(tasks) >= self._prune_at[owner]:
                tasks[:] = [t for t in tasks if not t.done()]
                self._prune_at[owner] = max(64, 2 * len(tasks))
        return task

    def cancel_owner(self, owner: str) -> int:
        """Cancel every live task of `owner` (a crash); returns how many."""
        self.resume(owner)  # a paused zero killed: its held steps run only to unwind
        tasks = [t for t in self.owned.pop(owner, []) if not t.done()]
        self._prune_at.pop(owner, None)
        for t in tasks:
            t.cancel()
        return len(tasks)

    # -- pause (SIGSTOP) and resume ---------------------------------------------------------------
    def pause(self, owner: str) -> None:
        """Hold back every callback of `owner` until `resume(owner)`."""
        if owner in self.paused:
            return
        held: list[asyncio.Handle] = []
        self.paused[owner] = held
        ready: Any = self._ready  # type: ignore[attr-defined]
        keep: list[asyncio.Handle] = []
        for h in ready:
            (held if _owner(h) == owner else keep).append(h)
        ready.clear()
        ready.extend(keep)
        timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        for t in self._timers:
            if _owner(t[2]) == owner:
                held.append(t[2])
            else:
                timers.append(t)
        if len(timers) != len(self._timers):
            heapq.heapify(timers)
            self._timers = timers
        # Instance attributes: the fast path of a loop with nothing paused stays the class's.
        self.call_soon = self._held_call_soon  # type: ignore[method-assign]
        self.call_at = self._held_call_at  # type: ignore[method-assign]

    def resume(self, owner: str) -> None:
        held = self.paused.pop(owner, None)
        if held is None:
            return
        ready: Any = self._ready  # type: ignore[attr-defined]
        for h in held:
            if h.cancelled():
                continue
            if isinstance(h, asyncio.TimerHandle):
                heapq.heappush(self._timers, (h.when(), self._seq(), h))
            else:
                ready.append(h)
        if not self.paused:
            del self.call_soon, self.call_at

    def _held_call_soon(self, callback: Callable[..., Any], *args: Any,
                        context: contextvars.Context | None = None) -> asyncio.Handle:
        h = asyncio.Handle(callback, args, self, context)
        held = self.paused.get(_owner(h))
        if held is None:
            self._ready.append(h)  # type: ignore[attr-defined]
        else:
            held.append(h)
        return h

    def _held_call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                      context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        ctx = context if context is not None else contextvars.copy_context()
        held = self.paused.get(ctx.get(OWNER, ""))
        if held is None:
            return SimLoop.call_at(self, when, callback, *args, context=ctx)
        h = asyncio.TimerHandle(when, callback, args, self, ctx)
        h._scheduled = True  # type: ignore[attr-defined]  # as call_at leaves it (cancel() accounts for it)
        held.append(h)
        return h

    def run_in_executor(self, executor: Executor | None, func: Callable[..., T],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[T]:
        """Run func on the loop after a seeded latency, FIFO per executor (the WAL
        thread's queue), in the caller's context (so a crash cancels it with its owner)."""
        fut: asyncio.Future[T] = self.create_future()
        key = id(executor)
        start = max(self.now, self._busy_until.get(key, 0.0))
        done_at = self._busy_until[key] = start + self.rng.uniform(*self.disk_latency)

        def run() -> None:
            if fut.cancelled():
                return
            try:
                fut.set_result(func(*args))
            except BaseException as e:  # handed to the awaiting coroutine, as a thread's would be
                fut.set_exception(e)

        self.call_at(done_at, run)
        return fut


def _owner(h: asyncio.Handle) -> str:
    return h._context.get(OWNER, "")  # type: ignore[attr-defined, no-any-return]


class SimClock:
    """One zero's clock (zero.replica.ports.Clock) on the loop's virtual time: its
    monotonic clock starts at an offset of its own (only differences mean anything) and
    runs at a rate of its own (clock skew between zeros: 1.1 runs 10% fast), which
    `set_rate` changes without a jump. A sleep lasts its length on this clock (computed
    at the rate when it begins). The wall clock is the loop's, unskewed."""

    def __init__(self, loop: SimLoop, offset: float = 0.0, rate: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError(f"a clock rate must be positive, got {rate}")
        self._loop = loop
        self._base = loop.now + offset  # the reading at loop time _at
        self._at = loop.now
        self.rate = rate

    def monotonic(self) -> float:
        return self._base + (self._loop.now - self._at) * self.rate

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"a clock rate must be positive, got {rate}")
        self._base = self.monotonic()
        self._at = self._loop.now
        self.rate = rate

    def wall(self) -> float:
        return EPOCH + self._loop.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.rate)
