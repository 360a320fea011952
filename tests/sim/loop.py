"""A deterministic asyncio event loop on virtual time, and the clock the zeros read.

`SimLoop` is asyncio's own BaseEventLoop (the same ready queue, the same timer heap)
with two things replaced:
- time: `time()` is a virtual clock that jumps straight to the next timer whenever
  nothing is ready (the "selector" never blocks, it advances the clock by the timeout
  the loop asked for). A run with nothing ready and no timer is a deadlock: it raises.
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


class _Selector:
    """asyncio's selector, reduced to advancing virtual time by the timeout asked for."""

    def __init__(self, loop: SimLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[Any]:
        if timeout is None:
            raise Deadlock("nothing is ready and no timer is set")
        if timeout > 0:
            self._loop.now += timeout
        return []

    def close(self) -> None:
        pass


class SimLoop(asyncio.BaseEventLoop):
    def __init__(self, rng: random.Random, *, disk_latency: tuple[float, float] = (0.0005, 0.004)) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _Selector(self)  # type: ignore[assignment]
        self._clock_resolution = 1e-9
        self.rng = rng
        self.disk_latency = disk_latency
        self._busy_until: dict[int, float] = {}  # id(executor) -> when its queue is empty
        self.owned: dict[str, dict[asyncio.Task[Any], None]] = {}  # owner -> its live tasks, in creation order
        self.paused: dict[str, list[asyncio.Handle]] = {}  # owner -> its held handles, in scheduling order

    def time(self) -> float:
        return self.now

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        pass  # nothing runs in another thread

    def create_task(self, coro: Coroutine[Any, Any, T], *, name: str | None = None,  # type: ignore[override]
                    context: contextvars.Context | None = None) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        owner = context.get(OWNER, "") if context is not None else OWNER.get()
        if owner:
            tasks = self.owned.setdefault(owner, {})
            tasks[task] = None
            task.add_done_callback(lambda t: tasks.pop(t, None))
        return task

    def cancel_owner(self, owner: str) -> int:
        """Cancel every live task of `owner` (a crash); returns how many."""
        self.resume(owner)  # a paused zero killed: its held steps run only to unwind
        tasks = self.owned.pop(owner, {})
        for t in list(tasks):
            t.cancel()
        return len(tasks)

    # -- pause (SIGSTOP) and resume ---------------------------------------------------------------
    def pause(self, owner: str) -> None:
        """Hold back every callback of `owner` until `resume(owner)`."""
        if owner in self.paused:
            return
        held = self.paused[owner] = []
        ready: Any = self._ready  # type: ignore[attr-defined]
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        keep = [h for h in ready if _owner(h) != owner or held.append(h)]
        ready.clear()
        ready.extend(keep)
        timers = [h for h in scheduled if _owner(h) != owner or held.append(h)]
        if len(timers) != len(scheduled):
            scheduled[:] = timers
            heapq.heapify(scheduled)
        # Instance attributes: the fast path of a loop with nothing paused stays asyncio's own.
        self.call_soon = self._held_call_soon  # type: ignore[method-assign]
        self.call_at = self._held_call_at  # type: ignore[method-assign]

    def resume(self, owner: str) -> None:
        held = self.paused.pop(owner, None)
        if held is None:
            return
        ready: Any = self._ready  # type: ignore[attr-defined]
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        for h in held:
            if h.cancelled():
                continue
            if isinstance(h, asyncio.TimerHandle):
                heapq.heappush(scheduled, h)
            else:
                ready.append(h)
        if not self.paused:
            del self.call_soon, self.call_at

    def _held_call_soon(self, callback: Callable[..., Any], *args: Any,
                        context: contextvars.Context | None = None) -> asyncio.Handle:
        h = asyncio.BaseEventLoop.call_soon(self, callback, *args, context=context)
        held = self.paused.get(_owner(h))
        if held is not None:
            self._ready.pop()  # type: ignore[attr-defined]  # the handle just appended
            held.append(h)
        return h

    def _held_call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                      context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        ctx = context if context is not None else contextvars.copy_context()
        held = self.paused.get(ctx.get(OWNER, ""))
        if held is None:
            return asyncio.BaseEventLoop.call_at(self, when, callback, *args, context=ctx)
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
    monotonic clock starts at an offset of its own (only differences mean anything)."""

    def __init__(self, loop: SimLoop, offset: float = 0.0) -> None:
        self._loop = loop
        self._offset = offset

    def monotonic(self) -> float:
        return self._loop.now + self._offset

    def wall(self) -> float:
        return EPOCH + self._loop.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
