"""Hypothesis-driven malformed and extreme requests to every Zero and ZeroAdmin RPC of a
live single-zero cluster (issue 11, item 3; SPEC semantics 8): every error is one of
the SPEC's status codes (never UNKNOWN/INTERNAL, i.e. no unhandled exception), input the
SPEC calls out of range gets INVALID_ARGUMENT, an error changes nothing (GetState
before/after, liveness fields aside), a success is well formed, and the node stays
healthy and alive throughout. Derandomized: the same examples on every run."""

from __future__ import annotations

import itertools
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs import FAST, ZeroProc, write_until_ok
from zero.pb import zero_pb2, zero_pb2_grpc

SPEC_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
              grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED,
              grpc.StatusCode.PERMISSION_DENIED}
MAX_COUNT = 1_000_000

u64 = st.one_of(st.integers(0, 8), st.sampled_from([2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, MAX_COUNT,
                                                     MAX_COUNT + 1]), st.integers(0, 2**64 - 1))
u32 = st.one_of(st.integers(0, 8), st.sampled_from([2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
i64 = st.one_of(st.integers(-2, 8), st.sampled_from([-2**63, 2**63 - 1]), st.integers(-2**63, 2**63 - 1))
names = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.sampled_from(["", " ", "\x00", "a" * 256, "b" * 4096, "c" * 70_000, "../etc", "p\nq", "ünï", "💥" * 300]),
)
addrs = st.one_of(names, st.sampled_from(["host:0", "host:65536", "host:-1", ":7080", "host", "[::1]:7080",
                                          "h:7080:1", "h" * 3000 + ":7080"]))
tablet = st.builds(zero_pb2.Tablet, predicate=names, group_id=u32, force=st.booleans(), size_bytes=i64,
                   read_only=st.booleans(), move_ts=u64)

ZERO_CALLS = st.one_of(
    st.tuples(st.just("Connect"), st.builds(zero_pb2.ConnectRequest, id=u64, addr=addrs, group_id=u32,
                                            learner=st.booleans())),
    st.tuples(st.just("Heartbeat"), st.builds(zero_pb2.HeartbeatRequest, member_id=u64, group_id=u32,
                                              leader=st.booleans())),
    st.tuples(st.just("ShouldServe"), tablet),
    st.tuples(st.just("Tablets"), st.builds(zero_pb2.TabletsRequest, tablets=st.lists(tablet, max_size=5))),
    st.tuples(st.just("UpdateTabletSizes"), st.builds(zero_pb2.TabletSizes, group_id=u32,
                                                      sizes=st.dictionaries(names, i64, max_size=4))),
    st.tuples(st.just("AssignIds"), st.builds(zero_pb2.AssignIdsRequest, kind=st.sampled_from([0, 1, 2, 77]),
                                              count=u64)),
    st.tuples(st.just("Timestamps"), st.builds(zero_pb2.TimestampsRequest, count=u64)),
    st.tuples(st.just("GetState"), st.just(zero_pb2.GetStateRequest())),
)
ADMIN_CALLS = st.one_of(
    st.tuples(st.just("RemoveNode"), st.builds(zero_pb2.RemoveNodeRequest, node_id=u64, group_id=u32)),
    st.tuples(st.just("MoveTablet"), st.builds(zero_pb2.MoveTabletRequest, predicate=names, dst_group=u32)),
    st.tuples(st.just("TransferLeadership"), st.builds(zero_pb2.TransferLeadershipRequest)),
    st.tuples(st.just("SetRebalance"), st.builds(zero_pb2.SetRebalanceRequest, mode=st.sampled_from([0, 1, 2, 3, 99]))),
    st.tuples(st.just("RaftStatus"), st.just(zero_pb2.RaftStatusRequest())),
)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    z = ZeroProc(tmp_path_factory.mktemp("fuzz") / "z1", "z1", flags=(*FAST, "--rebalance-interval", "0"))
    try:
        z.start()
        z.wait_healthy(30)
        for i in range(2):  # two groups, a tablet, a lease: something to damage
            r = write_until_ok([z.addr], lambda s: s.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=5), 10)
            z.stub.ShouldServe(zero_pb2.Tablet(predicate=f"p{i}", group_id=r.member.group_id), timeout=5)
        yield z
    finally:
        z.cleanup()


def snapshot_state(z: ZeroProc) -> bytes:
    st_ = z.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
    for g in st_.groups.values():  # liveness moves on its own; everything else must not
        for m in g.members.values():
            m.healthy, m.last_heartbeat_ms = False, 0
    for m in st_.zeros.values():
        m.healthy, m.last_heartbeat_ms = False, 0
    return st_.SerializeToString(deterministic=True)


def out_of_range(method: str, req: Any) -> bool:
    """Input the SPEC's error table says must be INVALID_ARGUMENT."""
    if method in ("AssignIds", "Timestamps"):
        return req.count == 0 or req.count > MAX_COUNT
    if method == "ShouldServe":
        return req.predicate == "" or len(req.predicate.encode()) > 65_536
    return False


def check_call(z: ZeroProc, stub: Any, method: str, req: Any) -> None:
    before = snapshot_state(z)
    try:
        resp = getattr(stub, method)(req, timeout=5)
    except grpc.RpcError as e:
        code = e.code()
        assert code in SPEC_CODES, f"{method}({req!r:.300}) -> {code} {e.details()!r:.300}: not a SPEC status"
        assert e.details(), f"{method} -> {code} with no message"
        if out_of_range(method, req):
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method}({req!r:.200}) -> {code}"
        assert snapshot_state(z) == before, f"{method}({req!r:.300}) failed with {code} but changed the state"
        return
    assert not out_of_range(method, req), f"{method}({req!r:.200}) accepted out-of-range input: {resp!r:.200}"
    if method in ("AssignIds", "Timestamps"):
        assert 1 <= resp.start_id <= resp.end_id and resp.end_id - resp.start_id + 1 == req.count, resp
    if method == "Tablets":
        assert len(resp.tablets) == len(req.tablets)


def assert_healthy(z: ZeroProc) -> None:
    z.check_alive()
    z.wait_healthy(10)


FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.mark.timeout(300)
@FUZZ
@given(call=ZERO_CALLS)
def test_fuzz_zero_service(node, call) -> None:
    method, req = call
    check_call(node, node.stub, method, req)
    node.check_alive()


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=60)
@given(call=ADMIN_CALLS)
def test_fuzz_admin_service(node, call) -> None:
    method, req = call
    check_call(node, node.admin, method, req)
    node.check_alive()


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=25)
@given(since=u64, cluster_id=names)
def test_fuzz_stream_membership(node, since, cluster_id) -> None:
    """Any resume point and any cluster id: the first message is a full state (or the
    stream is refused with a SPEC code); nothing changes."""
    before = snapshot_state(node)
    call = node.stub.StreamMembership(zero_pb2.StreamMembershipRequest(since_version=since, cluster_id=cluster_id),
                                      timeout=5)
    try:
        first = next(call)
        if since > first.version or cluster_id != first.cluster_id:
            assert first.full, f"resumed from {since}/{cluster_id!r:.40} without a full state: {first!r:.200}"
    except grpc.RpcError as e:
        assert e.code() in SPEC_CODES, e
    finally:
        call.cancel()
    assert snapshot_state(node) == before


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=40)
@given(counts=st.lists(u64, min_size=1, max_size=4))
def test_fuzz_timestamp_stream(node, counts) -> None:
    """Any counts on one TimestampStream: the requests before the first out-of-range count
    are answered in order with ranges of their counts, then the stream ends with
    INVALID_ARGUMENT (or a SPEC code); a stream refused at its first request changes
    nothing."""
    before = snapshot_state(node)
    call = node.stub.TimestampStream(iter([zero_pb2.TimestampsRequest(count=c) for c in counts]), timeout=5)
    valid = list(itertools.takewhile(lambda c: 1 <= c <= MAX_COUNT, counts))
    got = []
    try:
        for r in call:
            got.append(r)
    except grpc.RpcError as e:
        assert e.code() in SPEC_CODES, f"TimestampStream({counts}) -> {e.code()} {e.details()!r:.300}"
        assert e.details(), f"TimestampStream -> {e.code()} with no message"
        if len(valid) < len(counts):
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"TimestampStream({counts}) -> {e.code()}"
        if not valid:  # the good requests before a bad one may lease a block
            assert snapshot_state(node) == before, f"TimestampStream({counts}) failed but changed the state"
    else:
        assert len(valid) == len(counts), f"TimestampStream({counts}) accepted out-of-range input"
    assert [r.end_id - r.start_id + 1 for r in got] == valid[:len(got)]
    assert all(1 <= a.start_id <= a.end_id < b.start_id for a, b in zip(got, got[1:]))
    node.check_alive()


def test_node_healthy_after_fuzzing(node) -> None:
    assert_healthy(node)
    st_ = node.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
    assert st_.version > 0 and st_.cluster_id
