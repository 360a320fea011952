"""zero.client against a real ZeroApp on loopback: leader discovery and retries,
merged timestamps, UID blocks, the watched shard map."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest

from zero.app import RunConfig, ZeroApp
from zero.client import ZeroClient
from zero.pb import zero_pb2


def _dead_addr() -> str:
    # A port the OS just handed out and nobody listens on.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


async def _app(tmp_path) -> ZeroApp:
    app = ZeroApp(RunConfig(data_dir=str(tmp_path / "zw"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            tick=0.01, log_format="json"), log_stream=io.StringIO())
    await app.start()
    node = app.node
    assert node is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (node.is_leader and node.state.cluster_id and node.raft_id in node.state.state_copy().zeros):
        assert loop.time() < deadline, "no leader"
        await asyncio.sleep(0.01)
    return app


@pytest.mark.timeout(60)
def test_client_rpcs_timestamps_uids_and_failover_between_addresses(tmp_path):
    async def main() -> None:
        app = await _app(tmp_path)
        try:
            # The first address is dead: the client moves on to the live one.
            async with ZeroClient([_dead_addr(), f"127.0.0.1:{app.grpc_port}"], retry_deadline=10) as zc:
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
