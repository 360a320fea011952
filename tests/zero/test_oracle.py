"""The transaction oracle served by real zeros over gRPC (SPEC "Transactions: the
oracle"): decisions and their reasons, bad input, CommitStream, TryAbort/TxnStatus, the
Oracle stream's watermark rule and resumption, read-only timestamps, safe_ts from
heartbeats, and in-flight transactions across a leadership transfer."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from support.aio import until
from zero.client import CommitRefused, ZeroClient
from zero.pb import state_pb2, zero_pb2, zero_pb2_grpc
from zeroapps import app_cluster, one_zero

pytestmark = pytest.mark.timeout(90)


async def _serving(zc: ZeroClient, tablet: str = "t") -> int:
    """A data node in group 1 that owns `tablet`; returns the group."""
    member = (await zc.connect("127.0.0.1:1")).member
    await zc.should_serve(tablet, member.group_id)
    return member.group_id


def test_decisions_reasons_and_bad_input(tmp_path) -> None:
    async def main() -> None:
        app = await one_zero(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc:
                g = await _serving(zc)
                t1, t2 = await zc.timestamp(), await zc.timestamp()
                first = await zc.commit(t1, [7], [("t", g)])
                assert not first.aborted and first.commit_ts > t2
                # Overlapping on key 7: exactly one commits.
                lost = await zc.commit(t2, [7], [("t", g)])
                assert lost.aborted and lost.reason == zero_pb2.CONFLICT
                # Disjoint, and read-only (no keys): both commit.
                t3, t4 = await zc.timestamp(), await zc.timestamp()
                assert (await zc.commit(t3, [8], [("t", g)])).commit_ts > t4
                assert not (await zc.commit(t4)).aborted
                # Started after the commit: no conflict.
                assert not (await zc.commit(await zc.timestamp(), [7])).aborted
                # A repeated request gets the same decision; a late abort changes nothing.
                again = await zc.commit(t1, [7], [("t", g)])
                assert (again.commit_ts, again.aborted) == (first.commit_ts, False)
                assert (await zc.abort(t2)).reason == zero_pb2.CONFLICT
                # WRONG_GROUP: another group, no such group, an unowned tablet.
                for writes in ([("t", g + 1)], [("nobody", g)]):
                    r = await zc.commit(await zc.timestamp(), [9], writes)
                    assert r.aborted and r.reason == zero_pb2.WRONG_GROUP, r
                # Bad input: INVALID_ARGUMENT, nothing decided.
                stub = zero_pb2_grpc.ZeroStub(grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
                for req in (zero_pb2.CommitRequest(start_ts=0),
                            zero_pb2.CommitRequest(start_ts=10**15),
                            zero_pb2.CommitRequest(start_ts=t3, conflict_keys=list(range(100_001)))):
                    with pytest.raises(grpc.aio.AioRpcError) as ei:
                        await stub.CommitOrAbort(req)
                    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
                with pytest.raises(CommitRefused, match="INVALID_ARGUMENT"):
                    await zc.commit(10**15, [1])
                # TryAbort decides what is undecided; TxnStatus only reports.
                t5 = await zc.timestamp()
                assert (await zc.txn_status([t5]))[0].commit_ts == 0
                st = await zc.try_abort([t5, t1])
                assert st[0].reason == zero_pb2.CLIENT_ABORT and st[1].commit_ts == first.commit_ts
                assert (await zc.commit(t5, [1])).reason == zero_pb2.CLIENT_ABORT
                assert [r.start_ts for r in await zc.txn_status([t1, t2, t5])] == [t1, t2, t5]
                # Counted by the leader that decided.
                text = app.node.metrics.render().decode()
                assert "zero_txn_commits_total 4.0" in text, text
                assert 'zero_txn_aborts_total{reason="CONFLICT"} 1.0' in text
                assert 'zero_txn_aborts_total{reason="WRONG_GROUP"} 2.0' in text
                assert 'zero_txn_aborts_total{reason="CLIENT_ABORT"} 1.0' in text
        finally:
            await app.stop()

    asyncio.run(main())


def test_a_fenced_tablet_refuses_commits_that_touch_it(tmp_path) -> None:
    async def main() -> None:
        app = await one_zero(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc:
                g = await _serving(zc)
                dst = (await zc.connect("127.0.0.1:2")).member.group_id  # --replicas 1: a group of its own
                assert dst != g
                ts = await zc.timestamp()
                # Fence "t" as a move's copy does (MOVE_COPYING: read-only), then commit.
                await app.node.propose(state_pb2.Proposal(start_move=state_pb2.StartMove(
                    predicate="t", dst_group=dst, move_ts=ts)))
                r = await zc.commit(await zc.timestamp(), [1], [("t", g)])
                assert r.aborted and r.reason == zero_pb2.TABLET_MOVING
                # Only that tablet: another one commits.
                await zc.should_serve("u", g)
                assert not (await zc.commit(await zc.timestamp(), [2], [("u", g)])).aborted
        finally:
            await app.stop()

    asyncio.run(main())


def test_commit_stream_answers_a_bad_request_and_stays_open(tmp_path) -> None:
    async def main() -> None:
        app = await one_zero(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc:
                ts = [await zc.timestamp() for _ in range(3)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
                q: asyncio.Queue[zero_pb2.CommitBatch | None] = asyncio.Queue()

                async def batches():
                    while (b := await q.get()) is not None:
                        yield b

                call = zero_pb2_grpc.ZeroStub(ch).CommitStream(batches())
                q.put_nowait(zero_pb2.CommitBatch(txns=[zero_pb2.CommitRequest(start_ts=ts[0], conflict_keys=[1]),
                                                        zero_pb2.CommitRequest(start_ts=0)]))
                first = await call.read()
                assert sorted(r.code for r in first.txns) == [0, 3]
                q.put_nowait(zero_pb2.CommitBatch(txns=[zero_pb2.CommitRequest(start_ts=ts[1], conflict_keys=[1]),
                                                        zero_pb2.CommitRequest(start_ts=ts[2], conflict_keys=[2])]))
                second = await call.read()
                by_ts = {r.start_ts: r for r in second.txns}
                assert by_ts[ts[1]].reason == zero_pb2.CONFLICT and by_ts[ts[2]].commit_ts > 0
                q.put_nowait(None)
                assert await call.read() == grpc.aio.EOF
        finally:
            await app.stop()

    asyncio.run(main())


def check_watermark(deltas: list[zero_pb2.OracleDelta], committed: dict[int, int]) -> None:
    """The Oracle stream's rule: commits in commit_ts order, max_assigned never
    decreasing, and every commit at or below a max_assigned sent before it."""
    seen: set[int] = set()
    last_commit = 0
    last_max = 0
    for d in deltas:
        for t in d.txns:
            if t.commit_ts:
                assert t.commit_ts > last_commit, "commits out of commit_ts order"
                last_commit = t.commit_ts
                seen.add(t.start_ts)
        assert d.max_assigned == 0 or d.max_assigned >= last_max, "max_assigned went back"
        last_max = max(last_max, d.max_assigned)
        missing = [s for s, c in committed.items() if c <= last_max and s not in seen]
        assert not missing, f"commits at or below max_assigned {last_max} not sent before it: {missing}"


def test_the_oracle_stream_and_its_watermark(tmp_path) -> None:
    async def main() -> None:
        app = await one_zero(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc, \
                    grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
                g = await _serving(zc)
                deltas: list[zero_pb2.OracleDelta] = []

                async def follow() -> None:
                    async for d in zero_pb2_grpc.ZeroStub(ch).Oracle(zero_pb2.OracleRequest()):
                        deltas.append(d)

                watcher = asyncio.create_task(follow())
                rng = random.Random(7)
                committed: dict[int, int] = {}

                async def txn() -> None:
                    start = await zc.timestamp()
                    r = await zc.commit(start, [rng.randrange(20)], [("t", g)])
                    if not r.aborted:
                        committed[start] = r.commit_ts

                await asyncio.gather(*(txn() for _ in range(200)))
                assert len(committed) > 5
                # An idle oracle: max_assigned reaches a timestamp handed out after the last commit.
                ts = await zc.timestamp()
                await until(lambda: deltas and max(d.max_assigned for d in deltas) >= ts, 10,
                            message="max_assigned to reach the last timestamp")
                check_watermark(deltas, committed)
                assert await zc.read_timestamp() >= ts
                await zc.wait_for_ts(ts, timeout=10)
                # Resuming from a watermark sends exactly the commits above it.
                mid = sorted(committed.values())[len(committed) // 2]
                first = await zero_pb2_grpc.ZeroStub(ch).Oracle(zero_pb2.OracleRequest(since_ts=mid)).read()
                assert [t.commit_ts for t in first.txns] == sorted(c for c in committed.values() if c > mid)
                assert first.max_assigned >= ts
                watcher.cancel()
        finally:
            await app.stop()

    asyncio.run(main())


def test_safe_ts_follows_the_reports_of_live_data_nodes(tmp_path) -> None:
    async def main() -> None:
        app = await one_zero(tmp_path, liveness_window=1.0)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc:
                member = (await zc.connect("127.0.0.1:1")).member
                old = await zc.timestamp()
                for _ in range(5):
                    await zc.timestamp()
                # Nobody reports: safe_ts stays.
                await asyncio.sleep(2.5)
                assert app.node.state.oracle.safe_ts == 0
                pinned = old + 3
                deadline = asyncio.get_running_loop().time() + 15
                while app.node.state.oracle.safe_ts == 0:
                    assert asyncio.get_running_loop().time() < deadline, "safe_ts never advanced"
                    await zc.heartbeat(member.id, member.group_id, min_active_ts=pinned)
                    await asyncio.sleep(0.2)
                assert 0 < app.node.state.oracle.safe_ts <= pinned
                r = await zc.commit(old, [1])
                assert r.aborted and r.reason == zero_pb2.TOO_OLD
        finally:
            await app.stop()

    asyncio.run(main())


def test_in_flight_transactions_survive_a_leadership_transfer(tmp_path) -> None:
    """A transfer in the middle of a commit workload aborts nothing: every transaction
    gets a decision (commit, or CONFLICT with another), and every decision is the same
    when asked again of the new leader."""
    async def main() -> None:
        apps = await app_cluster(tmp_path, 3)
        try:
            addrs = ",".join(f"127.0.0.1:{a.grpc_port}" for a in apps)
            async with ZeroClient(addrs, retry_deadline=30) as zc:
                g = await _serving(zc)
                rng = random.Random(3)
                decided: dict[int, zero_pb2.CommitResponse] = {}
                stop = asyncio.Event()

                async def worker() -> None:
                    while not stop.is_set():
                        start = await zc.timestamp()
                        decided[start] = await zc.commit(start, [rng.randrange(50)], [("t", g)])

                workers = [asyncio.create_task(worker()) for _ in range(16)]
                await until(lambda: len(decided) > 50, 20, message="commits before the transfer")
                leader = next(a for a in apps if a.node.is_leader)
                target = next(a for a in apps if a is not leader)
                await leader.node.transfer_leadership(target.node.raft_id)
                await until(lambda: target.node.is_leader, 20, message="the transfer")
                n = len(decided)
                await until(lambda: len(decided) > n + 50, 20, message="commits after the transfer")
                stop.set()
                await asyncio.gather(*workers)
                reasons = {r.reason for r in decided.values()}
                assert reasons <= {zero_pb2.NOT_ABORTED, zero_pb2.CONFLICT}, reasons
                again = await zc.txn_status(sorted(decided))
                for r in again:
                    d = decided[r.start_ts]
                    assert (r.commit_ts, r.aborted, r.reason) == (d.commit_ts, d.aborted, d.reason)
        finally:
            for a in apps:
                await a.stop()

    asyncio.run(main())


def test_operators_see_the_oracle(tmp_path, capsys) -> None:
    """The status page's report, `zero admin status` and `zero admin state` show the
    oracle: max_assigned, safe_ts, commits, aborts by reason, pending, table sizes."""
    import json
    import urllib.request

    from zero import cli

    async def main() -> None:
        app = await one_zero(tmp_path)
        try:
            async with ZeroClient(f"127.0.0.1:{app.grpc_port}") as zc:
                t1, t2 = await zc.timestamp(), await zc.timestamp()
                await zc.commit(t1, [1])
                await zc.commit(t2, [1])  # CONFLICT
                last = await zc.timestamp()
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{app.http_port}/status.json", timeout=5).read())
            o = json.loads(body)["oracle"]
            assert o["serving"] and o["commits"] == 1 and o["aborts"] == {"CONFLICT": 1}
            assert o["max_assigned"] >= last and o["conflict_keys"] == 1 and o["decisions"] == 2
            addr = f"127.0.0.1:{app.grpc_port}"
            assert await asyncio.to_thread(cli.main, ["admin", "status", "--addr", addr]) == 0
            out = capsys.readouterr().out
            assert "oracle: max_assigned" in out and "commits 1" in out and "conflict 1" in out, out
            assert await asyncio.to_thread(cli.main, ["admin", "state", "--addr", addr, "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["oracle"]["commits"] in (1, "1") and doc["oracle"]["aborts"] == {"CONFLICT": "1"}, doc
        finally:
            await app.stop()

    asyncio.run(main())
