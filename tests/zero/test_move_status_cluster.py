"""MoveTablet with detach, GetMoves and CancelMove against a ZeroApp and reference data
nodes in one process (tests/zero/test_moves.py's cluster), and the move metrics."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from support.aio import until
from zero.errors import FailedPreconditionError
from zero.pb import datanode_pb2 as dn
from zero.pb import state_pb2, zero_pb2
from zero.state import versions

from test_moves import Env, _metric, cluster

SC = grpc.StatusCode


async def status(env: Env, move_id: int) -> zero_pb2.MoveStatus:
    r = await env.admin.GetMoves(zero_pb2.GetMovesRequest(move_id=move_id))
    assert len(r.moves) == 1 and r.moves[0].move_id == move_id, r
    return r.moves[0]


async def wait_phase(env: Env, move_id: int, phase: str) -> zero_pb2.MoveStatus:
    last: list[zero_pb2.MoveStatus] = []

    async def reached() -> bool:
        last[:] = [await status(env, move_id)]
        return last[0].phase == phase
    for _ in range(200):
        if await reached():
            return last[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"move {move_id} never reached {phase}: {last}")


@pytest.mark.timeout(30)
def test_a_detached_move_answers_at_once_and_get_moves_follows_it_to_its_end(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, chunk_delay=0.1) as env:
            await env.fill(0, "p", 200)
            await until(lambda: env.tablet("p") is not None and env.tablet("p").size_bytes > 0, 10,  # type: ignore
                        message="the size reported")
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2, detach=True))
            assert r.move_id and not r.committed and r.message == "recorded" and r.tablet.group_id == 1, r
            assert (await status(env, r.move_id)).phase in ("COPYING", "FENCED")  # the copy takes ~0.5 s
            done = await wait_phase(env, r.move_id, "COMMITTED")
            assert (done.predicate, done.src_group, done.dst_group) == ("p", 1, 2)
            assert done.keys_copied == 200 and done.bytes_copied >= 200 * 100 and done.size_bytes > 0
            assert 0 < done.started_ms <= done.updated_ms and done.message == ""
            assert env.tablet("p").group_id == 2  # type: ignore[union-attr]
            got = await env.dn[1].Get(dn.GetRequest(tablet="p", key=b"k199"))
            assert got.found
            # All moves, oldest first; unknown ids and finished moves are refused, changing nothing.
            everything = await env.admin.GetMoves(zero_pb2.GetMovesRequest())
            assert [m.move_id for m in everything.moves] == [r.move_id]
            version = env.state.version
            for req, code, words in ((zero_pb2.CancelMoveRequest(move_id=r.move_id), SC.FAILED_PRECONDITION,
                                      "COMMITTED"),
                                     (zero_pb2.CancelMoveRequest(move_id=0), SC.INVALID_ARGUMENT, "move_id is 0"),
                                     (zero_pb2.CancelMoveRequest(move_id=99), SC.NOT_FOUND, "move 99")):
                got_code, msg = await env.code(env.admin.CancelMove(req))
                assert got_code == code and words in msg, (req, got_code, msg)
            got_code, msg = await env.code(env.admin.GetMoves(zero_pb2.GetMovesRequest(move_id=99)))
            assert got_code == SC.NOT_FOUND and "move 99" in msg
            assert env.state.version == version
            assert _metric(env, "zero_move_bytes_total") == done.bytes_copied
            assert _metric(env, "zero_move_fenced_seconds_count") == 1
            assert _metric(env, "zero_moves_active") == 0
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_cancel_move_rolls_a_copy_back_and_the_source_serves_writes_again(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, chunk_delay=0.3) as env:
            await env.fill(0, "p", 400)  # 10 chunks: 3 s of copying, cancelled well before its end
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2, detach=True))
            await until(lambda: env.nodes[1].store.move_ids("p").newest == r.move_id, 10,
                        message="the copy under way")
            fenced = await status(env, r.move_id)
            assert fenced.phase == "FENCED" and env.tablet("p").read_only  # type: ignore[union-attr]
            assert _metric(env, "zero_moves_active") == 1
            # One move at a time: a second one, detached or not, is refused (not queued yet).
            await env.fill(0, "q", 1)
            code, msg = await env.code(env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="q", dst_group=2,
                                                                                      detach=True)))
            assert code == SC.FAILED_PRECONDITION and "one move at a time" in msg, msg
            c = await env.admin.CancelMove(zero_pb2.CancelMoveRequest(move_id=r.move_id))
            assert c.move.phase == "ROLLED_BACK" and c.move.message == "cancelled by the operator", c
            assert c.move.updated_ms >= fenced.updated_ms
            t = env.tablet("p")
            assert t is not None and t.group_id == 1 and not t.read_only and env.state.active_move() is None
            await until(lambda: env.nodes[1].store.move_ids("p").dropped == r.move_id, 10,
                        message="the destination's partial copy dropped")
            assert not env.nodes[1].store.has("p")
            await until(lambda: not env.nodes[0].moves.fences, 10, message="the source's fence lifted")
            await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"after", value=b"1"))
            # An operator's cancel is no failure: the tablet does not back off the rebalancer.
            assert env.app.moves is not None and not env.app.moves.backoff.blocked("p")
            assert _metric(env, "zero_tablet_moves_failed_total") == 0
            assert _metric(env, "zero_moves_active") == 0
            assert _metric(env, "zero_move_fenced_seconds_count") == 1
            code, msg = await env.code(env.admin.CancelMove(zero_pb2.CancelMoveRequest(move_id=r.move_id)))
            assert code == SC.FAILED_PRECONDITION and "ROLLED_BACK" in msg
            # The tablet moves again afterwards.
            again = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2))
            assert again.committed and again.move_id == r.move_id + 1
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_version_4_move_no_leader_drives_is_rolled_back_and_shown_so(tmp_path) -> None:
    async def main() -> None:
        async with cluster(tmp_path) as env:
            await env.fill(0, "p", 20)
            node = env.app.node
            assert node is not None and env.app.leases is not None
            ts = await env.app.leases.assign(zero_pb2.TIMESTAMP, 1)
            # As an earlier leader would have left it: recorded and fenced, never finished.
            started = await node.propose(state_pb2.Proposal(start_move=state_pb2.StartMove(
                predicate="p", dst_group=2, move_ts=ts.start_id, record_version=4, now_ms=1_000)))
            assert started.move is not None and not env.tablet("p").read_only  # type: ignore[union-attr]
            try:
                await node.propose(state_pb2.Proposal(fence_move=state_pb2.FenceMove(
                    move_id=started.move.move_id, now_ms=2_000)))
            except FailedPreconditionError as e:  # the leader's check (every second) was quicker
                assert "already aborted" in str(e), e
            done = await wait_phase(env, started.move.move_id, "ROLLED_BACK")
            assert done.message == "zero leader changed during the move" and done.updated_ms > 2_000, done
            t = env.tablet("p")
            assert t is not None and t.group_id == 1 and not t.read_only
            await until(lambda: not env.nodes[0].moves.fences, 10, message="no fence at the source")
            await env.dn[0].Put(dn.PutRequest(tablet="p", key=b"k", value=b"v"))
    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_cluster_below_version_4_gets_the_older_record_and_its_moves_still_work(tmp_path, monkeypatch) -> None:
    # As if one zero still ran version 3: every version-4 entry would be refused by propose.
    monkeypatch.setattr(versions, "effective", lambda v: min(3, max(1, v)))

    async def main() -> None:
        async with cluster(tmp_path) as env:
            await env.fill(0, "p", 20)
            with pytest.raises(FailedPreconditionError, match="needs cluster version 4"):
                versions.check_proposal(state_pb2.Proposal(fence_move=state_pb2.FenceMove(move_id=1)),
                                        env.state.cluster_version)
            r = await env.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="p", dst_group=2))
            assert r.committed, r
            rec = env.state.moves()[-1]
            assert rec.record_version == 0 and rec.phase == state_pb2.MOVE_COMMITTED and not rec.started_ms
            st = await status(env, r.move_id)
            assert (st.phase, st.started_ms, st.bytes_copied) == ("COMMITTED", 0, 0)
    asyncio.run(main())
