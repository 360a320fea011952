"""Concurrent linearizable reads never lose a ReadIndex round (a round scheduled by the
previous round's answer must not replace one a caller started meanwhile)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from zero.node import NodeOptions, ZeroNode


@pytest.mark.timeout(60)
def test_many_concurrent_readers_all_finish_quickly(tmp_path):
    async def main() -> None:
        node = ZeroNode(NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01,
                                    read_timeout=3.0), logger=structlog.wrap_logger(logging.getLogger("t")))
        await node.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not node.is_leader:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
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
