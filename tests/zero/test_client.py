"""zero.client against a real ZeroApp on loopback: leader discovery and retries,
merged timestamps, UID blocks, the watched shard map."""

from __future__ import annotations

import asyncio

import pytest

from support import free_port
from zero.app import ZeroApp
from zero.client import ZeroClient
from zero.pb import zero_pb2

from zeroapps import one_zero

async def _app(tmp_path) -> ZeroApp:  # type: ignore[no-untyped-def]
    return await one_zero(tmp_path)


@pytest.mark.timeout(60)
def test_client_rpcs_timestamps_uids_and_failover_between_addresses(tmp_path):
    async def main() -> None:
        app = await _app(tmp_path)
        try:
            # The first address is dead: the client moves on to the live one.
            dead = f"127.0.0.1:{free_port()}"  # a port the OS just handed out: nobody listens on it
            async with ZeroClient([dead, f"127.0.0.1:{app.grpc_port}"], retry_deadline=10) as zc:
                r = await zc.connect("dn1:7080")
                assert r.member.id > 0 and r.member.group_id == 1
                t = await zc.should_serve("name", r.member.group_id)
                assert t.group_id == r.member.group_id
                assert (await zc.tablets(["name", "other"], 0))[0].group_id == r.member.group_id

                # 64 concurrent callers: every timestamp unique, each caller's strictly
                # increasing, and far fewer RPCs than timestamps.
                async def caller(n: int) -> list[int]:
                    return [await zc.timestamp() for _ in range(n)]

                results = await asyncio.gather(*(caller(50) for _ in range(64)))
                flat = [ts for r_ in results for ts in r_]
                assert len(set(flat)) == len(flat) == 64 * 50
                assert all(r_ == sorted(r_) and len(set(r_)) == len(r_) for r_ in results)
                assert zc.timestamp_rpcs < len(flat) / 4, zc.timestamp_rpcs
                # A timestamp taken after these finished is larger than all of them.
                assert await zc.timestamp() > max(flat)

                uids = [await zc.uid() for _ in range(25_000)]
                assert len(set(uids)) == len(uids)
                start, end = await zc.assign_ids(zero_pb2.UID, 10)
                assert start > max(uids) and end - start == 9
        finally:
            await app.stop()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_client_watch_keeps_the_shard_map_current(tmp_path):
    async def main() -> None:
        app = await _app(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc, \
                    ZeroClient(f"127.0.0.1:{app.grpc_port}") as watcher:
                m1 = (await zc.connect("dn1:7080")).member
                m2 = (await zc.connect("dn2:7080")).member
                assert m1.group_id == 1 and m2.group_id == 2
                await zc.should_serve("a", 1)
                watcher.start_watch()
                await watcher.wait_synced()
                assert watcher.group_for("a") == 1 and watcher.group_for("b") == 0
                await zc.should_serve("b", 2)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while watcher.group_for("b") != 2:
                    assert loop.time() < deadline, "the watcher never saw the claim"
                    await asyncio.sleep(0.01)
                # Liveness travels on the stream: a heartbeat makes the member healthy.
                await zc.heartbeat(m2.id, m2.group_id)
                while not (watcher.view.state and watcher.view.state.groups[2].members[m2.id].healthy):
                    assert loop.time() < deadline, "liveness never reached the watcher"
                    await asyncio.sleep(0.01)
                assert watcher.view.version == app.node.state.version
        finally:
            await app.stop()

    asyncio.run(main())
