"""A read-only timestamp (`TimestampsRequest.read_only`, the oracle's max_assigned) from
a leader that has been deposed without knowing it: it must not be below a commit the
new leader acknowledged before the request was sent, or a snapshot read at it misses an
acknowledged commit.

The bank workload's real-time checker (tests/fault/txn_checks.py) flagged snapshot reads
below acknowledged commits during leadership transfers. The case of a deposed leader is
provoked here as tests/cluster/test_stale_leader.py provokes stale timestamps: three
`zero run` whose peer traffic passes through the proxy of tests/fault; the leader's
links are stalled and it is paused, the others elect a leader that commits a
transaction, a read-only timestamp request is queued at the old leader and it is
resumed while it still believes it leads. Before read-only timestamps waited for a
ReadIndex round, the old leader answered 0, below a commit at 2.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from procs import FAST, ProcCluster, write_until_ok
from zero.pb import zero_pb2, zero_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fault package
from fault.loopback import LoopbackCluster  # noqa: E402
from fault.proxy import ANY  # noqa: E402

# As test_stale_leader.py: the followers elect after 0.5-1 s of silence, the first zero
# checks its quorum only every 1 s (of ticks), so once resumed it still leads a while.
FOLLOWER_FLAGS = (*FAST[:2], "--election-ticks", "25", "--rebalance-interval", "0")
LEADER_FLAGS = (*FAST[:2], "--election-ticks", "50", "--rebalance-interval", "0")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    pc = ProcCluster(tmp_path, 3, flags=FOLLOWER_FLAGS)
    pc.zeros[0].flags = list(LEADER_FLAGS)
    c = LoopbackCluster(tmp_path, pc=pc, proxies=True)
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


@pytest.mark.timeout(120)
def test_a_deposed_leader_hands_out_no_stale_read_timestamp(cluster: LoopbackCluster) -> None:
    c = cluster
    old = c.pc.wait_leader(20)
    assert old is c.nodes[0], f"expected the bootstrapping zero to lead, not {old.name}"
    others = [z for z in c.nodes if z is not old]
    assert c.net is not None
    chan = grpc.insecure_channel(old.addr)  # direct: not through the proxy, never stalled
    stub = zero_pb2_grpc.ZeroStub(chan)
    try:
        # The old leader serves the oracle (a read-only timestamp works) before the pause.
        write_until_ok([old.addr], lambda s: s.Timestamps(zero_pb2.TimestampsRequest(read_only=True), timeout=2),
                       20, "a read-only timestamp")
        c.net.stall(old.name, ANY)
        c.net.stall(ANY, old.name)
        old.signal(signal.SIGSTOP)
        try:
            new = c.pc.wait_leader(20, among=others)
            start = write_until_ok([new.addr], lambda s: s.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=2),
                                   10, "Timestamps").end_id
            acked = write_until_ok([new.addr], lambda s: s.CommitOrAbort(
                zero_pb2.CommitRequest(start_ts=start), timeout=2), 20, "CommitOrAbort")
            assert acked.commit_ts > start and not acked.aborted, acked
            queued = stub.Timestamps.future(zero_pb2.TimestampsRequest(read_only=True), timeout=10)
            time.sleep(0.5)  # sent (the connection was open before the pause)
        finally:
            old.signal(signal.SIGCONT)
        try:
            got = queued.result(timeout=15)
        except grpc.RpcError as e:  # refused: fine, nothing stale was said
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e
            return
        assert got.end_id >= acked.commit_ts, (
            f"the deposed leader answered read-only timestamp {got.end_id}, below the commit at "
            f"{acked.commit_ts} the new leader had acknowledged: a snapshot read there misses it")
    finally:
        chan.close()
        c.net.heal()
