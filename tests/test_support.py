"""The shared test helpers (tests/support): the poll returns the predicate's answer,
gives up after its deadline saying what it waited for, and the ports are distinct."""

from __future__ import annotations

import asyncio
import time

import pytest

from support import free_port, free_ports, until
from support import aio


def test_until_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, [], "leader"])
    assert until(lambda: next(answers), 1, interval=0.001) == "leader"


def test_until_gives_up_after_the_deadline_naming_what_it_waited_for() -> None:
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"after 0.05s waiting for a leader \(last answer: \[\]\)"):
        until(lambda: [], 0.05, message="a leader")
    assert time.monotonic() - t0 >= 0.05
    # Without a message: the lambda's own text.
    with pytest.raises(AssertionError, match=r"waiting for .*lambda: 1 > 2"):
        until(lambda: 1 > 2, 0.01)


def test_the_async_until_awaits_coroutines_and_keeps_the_loop_running() -> None:
    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, done.set)
        assert await aio.until(done.is_set, 1) is True

        async def answer() -> int:
            return 7
        assert await aio.until(answer, 1) == 7
        with pytest.raises(AssertionError, match="waiting for nothing"):
            await aio.until(lambda: False, 0.02, message="nothing")
    asyncio.run(main())


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(0 < p < 65536 for p in ports)
    assert 0 < free_port() < 65536
