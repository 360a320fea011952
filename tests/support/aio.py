"""`until` on the running event loop, for in-process tests (zeros, nodes and clients in
the test's own loop): the same poll as `support.until`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from . import timed_out

__all__ = ["until"]

T = TypeVar("T")

# In-process predicates read memory: polling often costs nothing and adds no latency.
INTERVAL = 0.01


async def until(predicate: Callable[[], T | Awaitable[T]], timeout: float, *, interval: float = INTERVAL,
                message: str | None = None) -> T:
    """Await `predicate()` (a plain function, or an async one) every `interval` s until
    it is truthy; returns that value. AssertionError after `timeout` s, as support.until.
    Only coroutines are awaited: an awaitable a plain predicate returns (a gRPC call, a
    task) is its answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got  # type: ignore[return-value]
        if loop.time() > deadline:
            raise timed_out(predicate, timeout, message, got)
        await asyncio.sleep(interval)
