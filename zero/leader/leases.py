"""Id and timestamp leases (SPEC semantics 2).

The leader leases blocks of ids through Raft ahead of demand (max(10,000, n + 10,000)
at a time, as Dgraph Zero does) and hands out contiguous ranges from them in memory:

- UIDs only need to be unique. Every block is committed before any id of it is handed
  out, and the state's max_uid only grows, so a new leader's blocks start above every
  block an old leader may still be using.
- Timestamps must also increase in real time. A timestamp is handed out only after a
  ReadIndex round that began after the request arrived has confirmed this zero still
  leads (one round per batch of waiting requests). A deposed leader — paused, or cut
  off — fails that round, so it can never hand out a timestamp below one the new
  leader already gave.

Blocks belong to the term that leased them: on any change of leadership they are
dropped, and the next request leases a fresh block above the committed maximum.

After a WAL whose damaged tail was cut off (the records lost may have been synced lease
blocks whose ids were handed out), nothing is handed out until the leader has raised
both ceilings by a margin (ZeroNode.lease_bump_pending), as a restore does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from zero import buggify
from zero.errors import InvalidArgumentError, UnavailableError
from zero.pb import state_pb2, zero_pb2
from zero.state import validate
from zero.state.delta import Applied

__all__ = ["Leases", "LeaseHost", "LEASE_AHEAD"]

LEASE_AHEAD = 10_000


@dataclass(slots=True)
class _Block:
    term: int
    next: int  # next id to hand out
    end: int   # last id of the block (inclusive)

    @property
    def remaining(self) -> int:
        return self.end - self.next + 1


class _Pool:
    """The leased, unused blocks of one id kind, in increasing order."""

    __slots__ = ("kind", "blocks", "lock", "prefetch")

    def __init__(self, kind: zero_pb2.IdKind) -> None:
        self.kind = kind
        self.blocks: list[_Block] = []
        self.lock = asyncio.Lock()  # one lease proposal in flight per kind
        self.prefetch: asyncio.Task[None] | None = None

    def available(self, term: int) -> int:
        return sum(b.remaining for b in self.blocks if b.term == term)

    def take(self, term: int, count: int) -> tuple[int, int] | None:
        """A contiguous range of `count` ids from the first block that has them;
        blocks passed over are dropped (their ids are simply never used)."""
        while self.blocks:
            b = self.blocks[0]
            if b.term != term:
                self.blocks.pop(0)
                continue
            if b.remaining >= count:
                start = b.next
                b.next += count
                if b.remaining == 0:
                    self.blocks.pop(0)
                return start, start + count - 1
            self.blocks.pop(0)
        return None


class LeaseHost(Protocol):
    """What Leases needs of the zero it runs on (zero/replica's ZeroNode)."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def term(self) -> int: ...
    @property
    def lease_bump_pending(self) -> bool: ...
    async def read_barrier(self) -> None: ...
    async def propose(self, proposal: state_pb2.Proposal) -> Applied: ...


class Leases:
    """The leader's lease blocks of one zero. Register `leadership_changed` in the node's
    leadership callbacks (the app does): blocks must not outlive their term."""

    def __init__(self, node: LeaseHost) -> None:
        self.node = node
        self._pools = {zero_pb2.UID: _Pool(zero_pb2.UID), zero_pb2.TIMESTAMP: _Pool(zero_pb2.TIMESTAMP)}
        # Called with (kind, last id) after every range handed out: the oracle's watermark
        # follows the timestamps (the app wires it).
        self.on_handed_out: list[Callable[[int, int], None]] = []

    def leadership_changed(self, leader: bool, term: int) -> None:
        """Drop every leased block and stop prefetching: on any change of leadership."""
        for pool in self._pools.values():
            pool.blocks.clear()
            if pool.prefetch is not None:
                pool.prefetch.cancel()
                pool.prefetch = None

    async def assign(self, kind: zero_pb2.IdKind, count: int) -> zero_pb2.AssignedIds:
        """A fresh inclusive range of `count` ids of `kind` (UID or TIMESTAMP)."""
        validate.count(count)
        if kind not in self._pools:
            raise InvalidArgumentError(f"unknown id kind {kind}; expected UID (0) or TIMESTAMP (1)")
        node = self.node
        if not node.is_leader:
            raise UnavailableError("this zero is not the leader; leases are served by the leader")
        if kind == zero_pb2.TIMESTAMP:
            # Confirm leadership with a quorum round that began after this request.
            await node.read_barrier()
        return await self._hand_out(self._pools[kind], count)

    def begin_timestamps(self, count: int) -> asyncio.Future[None]:
        """For requests answered in order on one stream (TimestampStream): check `count`
        and start, now, the ReadIndex round of a request that just arrived — requests
        outstanding together share rounds. Pass the result to `timestamps_after`, in
        request order, so the ranges also increase in request order."""
        validate.count(count)
        if not self.node.is_leader:
            raise UnavailableError("this zero is not the leader; leases are served by the leader")
        return asyncio.ensure_future(self.node.read_barrier())

    async def timestamps_after(self, barrier: asyncio.Future[None], count: int) -> zero_pb2.AssignedIds:
        """`count` timestamps, handed out once `barrier` (from `begin_timestamps`) has
        confirmed leadership with a round that began after the request arrived."""
        await barrier
        return await self._hand_out(self._pools[zero_pb2.TIMESTAMP], count)

    async def commit_slots(self, count: int) -> int:
        """The first of `count` fresh timestamps for the oracle's commit decisions, with no
        ReadIndex round: the decision's Raft commit in this term confirms the leadership
        they were leased under (SPEC "Transactions: the oracle", rule 1)."""
        return (await self._hand_out(self._pools[zero_pb2.TIMESTAMP], count)).start_id

    async def _hand_out(self, pool: _Pool, count: int) -> zero_pb2.AssignedIds:
        node = self.node
        while True:
            term = node.term
            if not node.is_leader:
                raise UnavailableError("this zero lost leadership while serving the request; retry")
            if node.lease_bump_pending:
                raise UnavailableError("this zero is raising its lease ceilings after a WAL repair; retry")
            got = pool.take(term, count)
            if got is not None:
                self._maybe_prefetch(pool, term)
                for cb in self.on_handed_out:
                    cb(pool.kind, got[1])
                return zero_pb2.AssignedIds(start_id=got[0], end_id=got[1])
            size = max(LEASE_AHEAD, count + LEASE_AHEAD)
            if buggify.ON and buggify.fire("leases.tiny-block"):
                size = count  # a block just big enough: the next request leases again
            await self._lease(pool, term, size, need=count)

    async def _lease(self, pool: _Pool, term: int, size: int, *, need: int) -> None:
        async with pool.lock:
            if any(b.term == term and b.remaining >= need for b in pool.blocks):
                return  # someone else leased while we waited
            applied = await self.node.propose(
                state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(kind=pool.kind, count=size)))
            ids = applied.ids
            assert ids is not None
            # A block counts only if we still lead in the term that leased it.
            if self.node.is_leader and self.node.term == term:
                pool.blocks.append(_Block(term=term, next=ids.start_id, end=ids.end_id))

    def _maybe_prefetch(self, pool: _Pool, term: int) -> None:
        """Lease the next block in the background when the current one runs low."""
        if pool.available(term) >= LEASE_AHEAD // 4:
            return
        if pool.prefetch is not None and not pool.prefetch.done():
            return

        async def run() -> None:
            try:
                await self._lease(pool, term, LEASE_AHEAD, need=LEASE_AHEAD // 4)
            except UnavailableError:
                pass  # the next request leases on demand

        pool.prefetch = asyncio.get_running_loop().create_task(run())
