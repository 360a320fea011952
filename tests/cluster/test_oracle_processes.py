"""The oracle across a kill -9 of the leader, with real `zero run` processes on loopback:
transactions in flight when the leader dies are decided afterwards (committed or
aborted for a conflict — never for the leader change), and every decision a client was
given is the one the new leader reports (SPEC "Transactions: the oracle", rules 2-3)."""

from __future__ import annotations

import asyncio
import random

import pytest

from procs import ProcCluster
from support import until
from zero.client import ZeroClient
from zero.pb import zero_pb2


@pytest.mark.timeout(120)
def test_in_flight_transactions_survive_a_kill9_of_the_leader(tmp_path) -> None:
    c = ProcCluster(tmp_path / "c", 3).start()
    try:
        lead = c.wait_leader()

        async def main() -> None:
            async with ZeroClient(c.addrs, retry_deadline=30, rpc_timeout=2) as zc:
                member = (await zc.connect("127.0.0.1:1")).member
                await zc.should_serve("t", member.group_id)
                rng = random.Random(5)
                decided: dict[int, zero_pb2.CommitResponse] = {}
                stop = asyncio.Event()

                async def worker() -> None:
                    while not stop.is_set():
                        start = await zc.timestamp()
                        decided[start] = await zc.commit(start, [rng.randrange(100)], [("t", member.group_id)])

                workers = [asyncio.create_task(worker()) for _ in range(16)]
                deadline = asyncio.get_running_loop().time() + 30
                while len(decided) < 100:
                    assert asyncio.get_running_loop().time() < deadline, "no commits before the kill"
                    await asyncio.sleep(0.05)
                lead.kill9()
                n = len(decided)
                while len(decided) < n + 100:
                    assert asyncio.get_running_loop().time() < deadline + 30, "no commits after the kill"
                    await asyncio.sleep(0.05)
                stop.set()
                await asyncio.gather(*workers)
                reasons = {r.reason for r in decided.values()}
                assert reasons <= {zero_pb2.NOT_ABORTED, zero_pb2.CONFLICT}, reasons
                assert any(not r.aborted for r in decided.values())
                for r in await zc.txn_status(sorted(decided)):
                    d = decided[r.start_ts]
                    assert (r.commit_ts, r.aborted, r.reason) == (d.commit_ts, d.aborted, d.reason), (r, d)
                # Commits are unique and ordered like the decisions' timestamps.
                commits = sorted(r.commit_ts for r in decided.values() if not r.aborted)
                assert len(commits) == len(set(commits))

        asyncio.run(main())
        until(lambda: c.leader(among=[p for p in c.zeros if p is not lead]) is not None, 20,
              message="a new leader")
    finally:
        c.cleanup()
