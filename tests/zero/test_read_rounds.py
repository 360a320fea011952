"""Concurrent linearizable reads never lose a ReadIndex round (a round scheduled by the
previous round's answer must not replace one a caller started meanwhile)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from raftcore.node import Node
from support.aio import until
from zero.replica.node import NodeOptions, ZeroNode

from zeroapps import bare_node


@pytest.mark.timeout(60)
def test_many_concurrent_readers_all_finish_quickly(tmp_path, monkeypatch):
    monkeypatch.setattr(Node, "local_read_index", lambda self: None)  # every read runs rounds, as with peers

    async def main() -> None:
        node = bare_node(NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01,
                                     read_timeout=3.0), logger=structlog.wrap_logger(logging.getLogger("t")))
        await node.start()
        loop = asyncio.get_running_loop()
        await until(lambda: node.is_leader, 10, message="a leader")
        slowest = 0.0

        async def reader() -> None:
            nonlocal slowest
            end = loop.time() + 2.0
            while loop.time() < end:
                t0 = loop.time()
                await node.read_barrier()  # raises UNAVAILABLE after 3 s if a round is lost
                slowest = max(slowest, loop.time() - t0)
                await asyncio.sleep(0)

        await asyncio.gather(*(reader() for _ in range(64)))
        assert slowest < 1.0, slowest
        await node.stop()

    asyncio.run(main())


async def _single_leader(tmp_path, **opts) -> ZeroNode:  # type: ignore[no-untyped-def]
    node = bare_node(NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01,
                                 election_ticks=5, **opts), logger=structlog.wrap_logger(logging.getLogger("t")))
    await node.start()
    await until(lambda: node.is_leader and node.applied > 0, 10, message="a leader that applied its first entry")
    await node.read_barrier()  # the path works before the fault below
    return node


@pytest.mark.timeout(60)
def test_unanswered_round_fails_its_readers_and_waiting_readers_without_leader(tmp_path, monkeypatch):
    """Readers carry no timer of their own: a round whose ReadIndex answer never comes
    fails after two election timeouts, and readers queued behind it fail after
    read_timeout when no leader is known any more."""
    from zero.errors import UnavailableError

    async def main() -> None:
        node = await _single_leader(tmp_path, read_timeout=0.5)
        assert node.raft_started

        async def dropped(self: Node, ctx: bytes) -> None:  # the ReadIndex request is lost
            return None

        monkeypatch.setattr(Node, "read_index", dropped)
        monkeypatch.setattr(Node, "local_read_index", lambda self: None)  # force rounds, as with peers
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = asyncio.ensure_future(node.read_barrier())
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(node.read_barrier())  # queued behind the round in flight
        await asyncio.sleep(0.02)
        node.leadership.lead = 0  # leadership is gone: nobody to start a new round with
        with pytest.raises(UnavailableError, match="quorum"):
            await first
        t1 = loop.time() - t0
        assert 0.09 <= t1 < 0.45, t1  # 2 x (5 ticks x 10 ms), well before read_timeout
        with pytest.raises(UnavailableError, match="no leader"):
            await second
        assert loop.time() - t0 >= 0.5
        await node.stop()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_answered_round_not_applied_in_time_fails(tmp_path, monkeypatch):
    """A follower cut off after its round was answered never applies up to the read
    index: its readers get UNAVAILABLE after read_timeout instead of hanging."""
    from zero.errors import UnavailableError

    async def main() -> None:
        node = await _single_leader(tmp_path, read_timeout=0.3)
        assert node.raft_started

        async def answered_far_ahead(self: Node, ctx: bytes) -> None:
            node.read_rounds.on_read_state(ctx, node.applied + 1_000_000)

        monkeypatch.setattr(Node, "read_index", answered_far_ahead)
        monkeypatch.setattr(Node, "local_read_index", lambda self: None)  # force rounds, as with peers
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(UnavailableError, match="apply"):
            await node.read_barrier()
        assert 0.3 <= loop.time() - t0 < 2.0
        # An explicit per-call timeout still works on its own.
        monkeypatch.setattr(Node, "read_index", lambda self, ctx: asyncio.sleep(0))
        with pytest.raises(UnavailableError, match="timed out"):
            await node.read_barrier(timeout=0.05)
        await node.stop()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_single_zero_reads_need_no_round(tmp_path):
    """The only voter answers a read barrier from its commit index once it has applied
    it: no ReadIndex round (raft would answer one at once anyway)."""
    async def main() -> None:
        node = await _single_leader(tmp_path)
        seq = node.read_rounds.rounds_started
        await asyncio.gather(*(node.read_barrier() for _ in range(100)))
        assert node.read_rounds.rounds_started == seq
        await node.stop()

    asyncio.run(main())
