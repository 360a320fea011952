"""ReadIndex rounds shared by concurrent linearizable readers (Raft thesis §6.4).

A reader waits for a round that began after it arrived: the leader confirms its
leadership with a quorum (raftcore's ReadIndex) and answers with its commit index, and
the reader is released once this zero has applied up to that index. Readers that arrive
while a round is out wait for the next one, so one round serves a whole batch (every
timestamp batch and tablet lookup goes through here). Deadlines live in the rounds, not
in a task per reader: `expire()`, called every tick, fails a round unanswered for
`round_timeout` and readers whose answered round was not applied within `read_timeout`.

No I/O of its own: the node passes in how to ask raftcore for a round (`request`), its
Clock, and where to report a round's latency; ZeroNode feeds it ReadStates, its applied
index and leadership changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from zero import buggify
from zero.errors import UnavailableError, ZeroError
from zero.replica.ports import Clock

__all__ = ["ReadRounds", "fail"]

T = TypeVar("T")


def fail(futs: Iterable[asyncio.Future[T]], err: ZeroError) -> None:
    for f in futs:
        if not f.done():
            f.set_exception(err)


class _Round:
    __slots__ = ("ctx", "waiters", "index", "started")

    def __init__(self, ctx: bytes, waiters: list[asyncio.Future[None]], started: float) -> None:
        self.ctx = ctx
        self.waiters = waiters
        self.index = -1  # set when the ReadState arrives
        self.started = started


class ReadRounds:
    def __init__(self, *, incarnation: str, request: Callable[[bytes], Awaitable[None]],
                 round_timeout: float, read_timeout: float, observe: Callable[[float], None],
                 clock: Clock) -> None:
        self._incarnation = incarnation  # makes request contexts unique across restarts
        self._request = request
        self._round_timeout = round_timeout
        self._read_timeout = read_timeout
        if buggify.ON and buggify.fire("reads.short-timeouts"):
            self._round_timeout = self._read_timeout = 0.5  # reads fail (UNAVAILABLE) more often
        self._observe = observe
        self._clock = clock
        self._waiting: list[asyncio.Future[None]] = []
        self._waiting_since = 0.0  # when the oldest of _waiting arrived
        self._round: _Round | None = None
        self._seq = 0
        self._ready: list[_Round] = []  # answered, waiting for the apply

    @property
    def rounds_started(self) -> int:
        return self._seq

    async def join(self) -> asyncio.Future[None]:
        """Queue a reader; its future resolves once a round that began after this call
        was answered and applied (or fails with UNAVAILABLE)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._waiting_since = self._clock.monotonic()
        self._waiting.append(fut)
        if self._round is None:
            await self.start_round()
        return fut

    async def start_round(self) -> None:
        # One round at a time: a round started from a scheduled task may find one that
        # a join() started meanwhile; that round's answer starts the next.
        if self._round is not None or not self._waiting:
            return
        waiters, self._waiting = self._waiting, []
        self._seq += 1
        ctx = f"r{self._incarnation}.{self._seq}".encode()
        self._round = _Round(ctx, waiters, self._clock.monotonic())
        await self._request(ctx)

    def on_read_state(self, ctx: bytes, index: int) -> None:
        rnd = self._round
        if rnd is None or rnd.ctx != ctx:
            return  # a late answer to a round that timed out
        rnd.index = index
        self._round = None
        self._observe(self._clock.monotonic() - rnd.started)
        self._ready.append(rnd)
        if self._waiting:
            asyncio.get_running_loop().create_task(self.start_round())

    def release(self, applied: int) -> None:
        """Release the readers of every answered round applied by now."""
        if not self._ready:
            return
        keep = []
        for rnd in self._ready:
            if rnd.index <= applied:
                for f in rnd.waiters:
                    if not f.done():
                        f.set_result(None)
            else:
                keep.append(rnd)
        self._ready = keep

    def expire(self, leader_known: bool) -> None:
        """Every tick: a round unanswered for round_timeout is abandoned (no quorum, or
        the request was dropped) and its readers get UNAVAILABLE; so do readers whose
        answered round has not been applied within read_timeout (a follower cut off
        after the answer) and readers left waiting that long without a leader to ask.
        Waiting readers start a fresh round when a leader is known."""
        now = self._clock.monotonic()
        rnd = self._round
        if rnd is not None and now - rnd.started > self._round_timeout:
            self._round = None
            fail(rnd.waiters, UnavailableError("linearizable read: leadership not confirmed by a quorum"))
        if self._ready and now - self._ready[0].started > self._read_timeout:
            late = [r for r in self._ready if now - r.started > self._read_timeout]
            self._ready = [r for r in self._ready if now - r.started <= self._read_timeout]
            for r in late:
                fail(r.waiters, UnavailableError("linearizable read timed out waiting for the apply (cut off?)"))
        if self._round is None and self._waiting:
            if leader_known:
                asyncio.get_running_loop().create_task(self.start_round())
            elif now - self._waiting_since > self._read_timeout:
                waiting, self._waiting = self._waiting, []
                fail(waiting, UnavailableError("linearizable read timed out: no leader is known"))

    def fail_all(self, err: ZeroError) -> None:
        rounds = list(self._ready)
        if self._round is not None:
            rounds.append(self._round)
        self._round = None
        self._ready = []
        waiting, self._waiting = self._waiting, []
        fail([f for r in rounds for f in r.waiters] + waiting, err)
