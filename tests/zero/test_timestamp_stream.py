"""TimestampStream (zero/frontdoor/zero_service.py) and zero.client's timestamps over it: answers in
request order, contiguous ranges, real-time order across clients, follower forwarding,
bad counts, leadership moving mid-stream, and the unary fallback against a zero that does
not have the stream. ZeroApps (gRPC + Raft transport) in one process, on loopback."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import pytest

from zero.app import ZeroApp
from zero.client import ZeroClient
from zero.frontdoor.forwarding import forwarded_status
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.rpc import BROKEN_STREAM_DETAILS, code_of

from support.aio import until
from zeroapps import app_cluster

SC = grpc.StatusCode






async def _stop(apps: list[ZeroApp]) -> None:
    for a in apps:
        if a.node is not None:
            object.__setattr__(a.node.opts, "transfer_on_stop", 0.0)
    await asyncio.gather(*(a.stop() for a in apps))


def _addr(app: ZeroApp) -> str:
    return f"127.0.0.1:{app.grpc_port}"


def _requests(*counts: int) -> list[zero_pb2.TimestampsRequest]:
    return [zero_pb2.TimestampsRequest(count=c) for c in counts]


@pytest.mark.timeout(60)
def test_stream_answers_in_order_with_contiguous_ranges_and_refuses_bad_counts(tmp_path):
    async def main() -> None:
        (app,) = await app_cluster(tmp_path, 1, rebalance_interval=0)
        try:
            async with grpc.aio.insecure_channel(_addr(app)) as ch:
                z = zero_pb2_grpc.ZeroStub(ch)
                # Several requests outstanding at once: answered in order, each a range of
                # its count, every range above the one before.
                counts = [1, 5, 2, 1000, 3]
                call = z.TimestampStream(iter(_requests(*counts)), timeout=10)
                got = [r async for r in call]
                assert [r.end_id - r.start_id + 1 for r in got] == counts
                assert all(a.end_id < b.start_id for a, b in itertools.pairwise(got))
                assert await call.code() == SC.OK
                # One at a time on an open stream, interleaved with unary Timestamps.
                stream = z.TimestampStream(timeout=10)
                last = got[-1].end_id
                for c in (1, 7, 1):
                    await stream.write(zero_pb2.TimestampsRequest(count=c))
                    r = await asyncio.wait_for(stream.read(), 5)
                    assert r.start_id > last and r.end_id - r.start_id + 1 == c
                    u = await z.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5)
                    assert u.start_id > r.end_id
                    last = u.end_id
                # A bad count: the requests before it are answered, then INVALID_ARGUMENT,
                # and nothing is handed out for it (the next range follows on directly).
                await stream.write(zero_pb2.TimestampsRequest(count=1))
                await stream.write(zero_pb2.TimestampsRequest(count=0))
                r = await asyncio.wait_for(stream.read(), 5)
                assert r.start_id == r.end_id > last
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await asyncio.wait_for(stream.read(), 5)
                assert ei.value.code() == SC.INVALID_ARGUMENT and "count" in (ei.value.details() or "")
                for bad in (0, 1_000_001):
                    call = z.TimestampStream(iter(_requests(bad)), timeout=5)
                    with pytest.raises(grpc.aio.AioRpcError) as ei:
                        async for _ in call:
                            raise AssertionError("a bad count was answered")
                    assert ei.value.code() == SC.INVALID_ARGUMENT
                u = await z.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5)
                assert u.start_id == r.end_id + 1
            # Metrics: one request per stream, by outcome.
            req = app.node.metrics.grpc_requests
            assert req.labels("zero.v1.Zero/TimestampStream", "OK")._value.get() >= 1
            assert req.labels("zero.v1.Zero/TimestampStream", "INVALID_ARGUMENT")._value.get() == 3
        finally:
            await _stop([app])

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_two_clients_timestamps_increase_in_real_time(tmp_path):
    async def main() -> None:
        (app,) = await app_cluster(tmp_path, 1, rebalance_interval=0)
        try:
            async with ZeroClient(_addr(app)) as a, ZeroClient(_addr(app)) as b:
                last = 0
                for i in range(200):  # alternating: each one starts after the other finished
                    ts = await (a if i % 2 else b).timestamp()
                    assert ts > last
                    last = ts
                # Concurrent callers on both: every call that began after another ended
                # got a larger timestamp.
                loop = asyncio.get_running_loop()
                calls: list[tuple[float, float, int]] = []

                async def caller(zc: ZeroClient) -> None:
                    for _ in range(100):
                        t0 = loop.time()
                        ts = await zc.timestamp()
                        calls.append((t0, loop.time(), ts))

                await asyncio.gather(*(caller(zc) for zc in (a, b) for _ in range(16)))
                _check_real_time(calls)
                assert min(ts for _, _, ts in calls) > last
                assert a.timestamps_over_stream and b.timestamps_over_stream  # the stream was used
                assert a.timestamp_rpcs < 16 * 100 + 100
        finally:
            await _stop([app])

    asyncio.run(main())


def _check_real_time(calls: list[tuple[float, float, int]]) -> None:
    """Every timestamp is unique, and one whose call began after another call ended is
    larger than that call's."""
    assert len({ts for _, _, ts in calls}) == len(calls)
    by_end = sorted(calls, key=lambda c: c[1])
    best, j = 0, 0  # the largest timestamp of the calls that ended before t0
    for t0, _, ts in sorted(calls):
        while j < len(by_end) and by_end[j][1] < t0:
            best = max(best, by_end[j][2])
            j += 1
        assert ts > best, f"a timestamp {ts} handed out after {best} had been"


@pytest.mark.timeout(120)
def test_follower_forwards_the_stream_and_leadership_moves_under_it(tmp_path):
    async def main() -> None:
        apps = await app_cluster(tmp_path, 3, rebalance_interval=0)
        try:
            leader = next(a for a in apps if a.node.is_leader)
            follower = next(a for a in apps if not a.node.is_leader)
            lead_addr = leader.node.state._state.zeros[leader.node.raft_id].addr
            async with grpc.aio.insecure_channel(_addr(follower)) as ch:
                z = zero_pb2_grpc.ZeroStub(ch)
                # Through a follower: relayed to the leader, answered in order, and the
                # trailers name the leader.
                call = z.TimestampStream(iter(_requests(1, 3, 2)), timeout=10)
                got = [r async for r in call]
                assert [r.end_id - r.start_id + 1 for r in got] == [1, 3, 2]
                assert all(a.end_id < b.start_id for a, b in itertools.pairwise(got))
                md = dict(await call.trailing_metadata())
                assert md["zero-leader-id"] == str(leader.node.raft_id) and md["zero-leader-addr"] == lead_addr
                # One hop only: a stream already forwarded once is refused by a follower.
                call = z.TimestampStream(iter(_requests(1)), timeout=5, metadata=(("zero-forwarded", "9"),))
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    async for _ in call:
                        raise AssertionError("a twice-forwarded stream was answered")
                assert ei.value.code() == SC.UNAVAILABLE
                assert dict(ei.value.trailing_metadata())["zero-leader-addr"] == lead_addr

            # Leadership moves while streams are open: a raw stream on the old leader ends
            # with UNAVAILABLE naming the new leader; a client's callers keep getting
            # timestamps above everything handed out before.
            loop = asyncio.get_running_loop()
            calls: list[tuple[float, float, int]] = []
            stop = asyncio.Event()
            async with grpc.aio.insecure_channel(_addr(leader)) as ch, \
                    ZeroClient([_addr(leader)], retry_deadline=20) as zc:
                raw = zero_pb2_grpc.ZeroStub(ch).TimestampStream(timeout=60)
                await raw.write(zero_pb2.TimestampsRequest(count=1))
                before_raw = (await asyncio.wait_for(raw.read(), 5)).end_id

                async def caller() -> None:
                    while not stop.is_set():
                        t0 = loop.time()
                        ts = await zc.timestamp()
                        calls.append((t0, loop.time(), ts))

                tasks = [asyncio.create_task(caller()) for _ in range(16)]
                await until(lambda: len(calls) > 200, 20, message="timestamps before the move")
                new = await leader.node.transfer_leadership(to=follower.node.raft_id)
                assert new == follower.node.raft_id
                moved_at = loop.time()
                await until(lambda: all(a.node.leader_id == new for a in apps), 20, message="new leader known")
                n0 = len(calls)
                await until(lambda: len(calls) > n0 + 200, 20, message="timestamps after the move")
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
                _check_real_time(calls)
                assert any(t0 > moved_at for t0, _, _ in calls)
                after = await zc.timestamp()
                assert after > max(ts for _, _, ts in calls) and after > before_raw
                assert zc.timestamps_over_stream

                await raw.write(zero_pb2.TimestampsRequest(count=1))
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await asyncio.wait_for(raw.read(), 10)
                assert ei.value.code() == SC.UNAVAILABLE
                new_addr = follower.node.state._state.zeros[new].addr
                assert dict(ei.value.trailing_metadata()).get("zero-leader-addr") == new_addr
        finally:
            await _stop(apps)

    asyncio.run(main())


class _OldZero(zero_pb2_grpc.ZeroServicer):
    """A zero of an older release: unary Timestamps only (the generated base class
    answers TimestampStream with UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.next = 100
        self.unary = 0

    async def Timestamps(self, request, context):  # type: ignore[no-untyped-def]
        self.unary += 1
        start = self.next
        self.next += request.count
        return zero_pb2.AssignedIds(start_id=start, end_id=self.next - 1)


@pytest.mark.timeout(30)
def test_client_falls_back_to_unary_timestamps_on_unimplemented() -> None:
    async def main() -> None:
        server = grpc.aio.server()
        old = _OldZero()
        zero_pb2_grpc.add_ZeroServicer_to_server(old, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with ZeroClient(f"127.0.0.1:{port}") as zc:
                got = await asyncio.wait_for(asyncio.gather(*(zc.timestamp() for _ in range(50))), 10)
                assert sorted(got) == list(range(100, 150))
                assert not zc.timestamps_over_stream and old.unary >= 1
                assert await asyncio.wait_for(zc.timestamp(), 5) == 150
        finally:
            await server.stop(None)

    asyncio.run(main())


class _FirstStreamFails(zero_pb2_grpc.ZeroServicer):
    """Its first TimestampStream goes wrong (`first`); later ones answer."""

    def __init__(self) -> None:
        self.streams = 0
        self.next = 1

    async def first(self, requests, context) -> None:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def TimestampStream(self, requests, context):  # type: ignore[no-untyped-def]
        self.streams += 1
        if self.streams == 1:
            await self.first(requests, context)
        async for req in requests:
            start = self.next
            self.next += req.count
            yield zero_pb2.AssignedIds(start_id=start, end_id=self.next - 1)


def _ten_timestamps_after_a_failed_stream(zero: _FirstStreamFails, rpc_timeout: float) -> None:
    """Ten concurrent timestamp() callers against `zero`: all answered, distinct, on a
    stream after the failed first one."""
    async def main() -> None:
        server = grpc.aio.server()
        zero_pb2_grpc.add_ZeroServicer_to_server(zero, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with ZeroClient(f"127.0.0.1:{port}", rpc_timeout=rpc_timeout) as zc:
                got = await asyncio.wait_for(asyncio.gather(*(zc.timestamp() for _ in range(10))), 15)
                assert len(set(got)) == 10 and zero.streams >= 2
        finally:
            await server.stop(None)

    asyncio.run(main())


class _StallingZero(_FirstStreamFails):
    """Its first TimestampStream never answers (a paused zero)."""

    async def first(self, requests, context) -> None:  # type: ignore[no-untyped-def]
        async for _ in requests:
            pass
        await asyncio.sleep(3600)


@pytest.mark.timeout(30)
def test_client_retries_a_stream_that_stops_answering() -> None:
    _ten_timestamps_after_a_failed_stream(_StallingZero(), rpc_timeout=0.5)


@pytest.mark.timeout(60)
def test_stream_reads_ahead_a_bounded_number_of_requests(monkeypatch):
    """A client that sends requests without reading the answers is not read without
    bound: at most STREAM_REQUESTS_AHEAD requests are taken ahead of their answers."""
    import zero.frontdoor.zero_service as srv

    monkeypatch.setattr(srv, "STREAM_REQUESTS_AHEAD", 4)
    started = []

    class Leases:
        def begin_timestamps(self, count: int) -> asyncio.Future[None]:
            started.append(count)
            return asyncio.get_running_loop().create_future()  # never confirmed

        async def timestamps_after(self, barrier: asyncio.Future[None], count: int) -> zero_pb2.AssignedIds:
            await barrier
            raise AssertionError("unreachable")

    async def main() -> None:
        svc = srv.ZeroService.__new__(srv.ZeroService)
        svc.leases = Leases()

        async def requests():  # an endless pipelining client
            n = 0
            while True:
                n += 1
                yield zero_pb2.TimestampsRequest(count=n)

        agen = svc.TimestampStream(requests(), None)
        first = asyncio.ensure_future(agen.__anext__())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(started) < 6 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        # One being answered, 4 queued, one more begun and waiting for room; no more.
        assert len(started) == 6, len(started)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await agen.aclose()

    asyncio.run(main())


class _BrokenStreamZero(_FirstStreamFails):
    """Its first TimestampStream fails as grpc-python's client reports a stream that
    ended under a request write (INTERNAL, zero.rpc.BROKEN_STREAM_DETAILS)."""

    async def first(self, requests, context) -> None:  # type: ignore[no-untyped-def]
        await context.abort(SC.INTERNAL, BROKEN_STREAM_DETAILS)


@pytest.mark.timeout(30)
def test_client_retries_a_stream_that_broke_under_a_write() -> None:
    """A leader stepping down ends its streams; a request written in that instant makes
    grpc-python report INTERNAL "Internal error from Core" instead of the server's status
    (found by the moves nemesis: data nodes passed it on to their writers). The call
    broke, as with UNAVAILABLE: the callers are retried on a new stream."""
    _ten_timestamps_after_a_failed_stream(_BrokenStreamZero(), rpc_timeout=2)


def test_code_of_reads_a_broken_stream_as_unavailable() -> None:
    def err(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)

    assert code_of(err(SC.INTERNAL, BROKEN_STREAM_DETAILS)) == SC.UNAVAILABLE
    assert code_of(err(SC.INTERNAL, "internal error in zero: KeyError: 3")) == SC.INTERNAL
    assert code_of(err(SC.FAILED_PRECONDITION, BROKEN_STREAM_DETAILS)) == SC.FAILED_PRECONDITION
    code, message = forwarded_status(err(SC.INTERNAL, BROKEN_STREAM_DETAILS))
    assert code == SC.UNAVAILABLE and "retry" in message
