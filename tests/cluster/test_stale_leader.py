"""Stale leadership, provoked on purpose: the cases a random fault schedule may miss.

Three `zero run` processes whose peer traffic passes through the userspace proxy of
tests/fault (proxy.py), so one zero can be cut off from its peers while a client still
reaches it directly:

- A paused leader: the client connects to the leader first, the leader's peer links are
  stalled and the leader is paused (SIGSTOP), the others elect a new leader, which
  hands out timestamps, claims a tablet and admits a data node; then requests are queued
  at the old leader and it is resumed (SIGCONT). It still believes it leads (it heard
  nothing since, and its CheckQuorum period is 1 s), so only its ReadIndex round stands
  between those requests and a stale answer: no timestamp at or below the new leader's,
  no linearizable read (GetState, ShouldServe) without the new leader's writes, no uids
  from a lease that never committed, no write acknowledged that the cluster does not keep.
- A lagging follower: the leader's link to it is stalled, a write commits without it,
  and its /state (a linearizable read served by the follower itself) must include the
  write or refuse — never answer from its stale copy.

These tests catch, on every run, the mutants `skip-readindex-before-timestamps`,
`local-reads-on-any-leader`, `ids-before-their-lease-commits` and
`follower-reads-locally` of `python -m tests.mutants`.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest

from procs import FAST, ProcCluster, ZeroProc, http_json, write_until_ok
from support import until
from zero.pb import zero_pb2, zero_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the fault package
from fault.loopback import LoopbackCluster  # noqa: E402
from fault.proxy import ANY  # noqa: E402

# Followers elect after 0.5-1 s of silence; the first zero (the leader) checks its quorum
# only every 1 s (of ticks, which do not advance while it is paused), so once resumed it
# believes it leads for at least that long: the requests queued during its pause reach it
# as a leader, whatever the machine's load.
FOLLOWER_FLAGS = (*FAST[:2], "--election-ticks", "25", "--rebalance-interval", "0")
BIG = 1_000_000  # the largest count one call may ask for
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


def _leader(c: LoopbackCluster) -> ZeroProc:
    lead = c.pc.wait_leader(20)
    assert lead is c.nodes[0], f"expected the bootstrapping zero to lead, not {lead.name}"
    return lead


def _outcome(f: Future[Any]) -> Any:
    """The answer, or the gRPC status code of the failure."""
    try:
        return f.result(timeout=15)
    except grpc.RpcError as e:
        return e.code()


@pytest.mark.timeout(120)
def test_a_resumed_leader_answers_nothing_stale(cluster: LoopbackCluster) -> None:
    c = cluster
    old = _leader(c)
    others = [z for z in c.nodes if z is not old]
    assert c.net is not None
    chan = grpc.insecure_channel(old.addr)  # direct: not through the proxy, never stalled
    stub = zero_pb2_grpc.ZeroStub(chan)
    try:
        # The channel is connected and the old leader holds leased blocks of this term.
        for _ in range(3):
            stub.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5)
            stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1), timeout=5)
        dn = stub.Connect(zero_pb2.ConnectRequest(addr="dn-before:7080"), timeout=5).member
        group = dn.group_id

        # Cut the old leader off from its peers, then pause it: nothing the new leader
        # sends can reach it before the queued requests.
        c.net.stall(old.name, ANY)
        c.net.stall(ANY, old.name)
        old.signal(signal.SIGSTOP)
        try:
            new = c.pc.wait_leader(20, among=others)
            fresh = [write_until_ok([new.addr], lambda s: s.Timestamps(
                zero_pb2.TimestampsRequest(count=1), timeout=2), 10, "Timestamps") for _ in range(3)]
            new_ts = max(r.end_id for r in fresh)
            claim = write_until_ok([new.addr], lambda s: s.ShouldServe(
                zero_pb2.Tablet(predicate="claimed-after-pause", group_id=group), timeout=2), 10, "claim")
            assert claim.group_id == group
            joined = write_until_ok([new.addr], lambda s: s.Connect(
                zero_pb2.ConnectRequest(addr="dn-after:7080"), timeout=2), 10, "Connect").member
            new_uids = write_until_ok([new.addr], lambda s: s.AssignIds(
                zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=BIG), timeout=2), 10, "AssignIds")

            # Queue requests at the paused old leader (its kernel buffers them), resume it.
            ts_futs = [stub.Timestamps.future(zero_pb2.TimestampsRequest(count=1), timeout=10) for _ in range(4)]
            stream_ts = stub.TimestampStream(iter([zero_pb2.TimestampsRequest(count=1)] * 2), timeout=10)
            read_tablet = stub.ShouldServe.future(zero_pb2.Tablet(predicate="claimed-after-pause"), timeout=10)
            read_state = stub.GetState.future(zero_pb2.GetStateRequest(), timeout=10)
            write = stub.Connect.future(zero_pb2.ConnectRequest(addr="dn-queued:7080"), timeout=10)
            # More uids than its leased block holds: it would need a new lease, which
            # cannot commit without a quorum.
            uid_fut = stub.AssignIds.future(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=BIG), timeout=10)
            time.sleep(0.5)  # the requests are sent (the connection was open before the pause)
        finally:
            old.signal(signal.SIGCONT)

        stamps = [_outcome(f) for f in ts_futs]
        try:
            stamps += list(stream_ts)
        except grpc.RpcError as e:
            stamps.append(e.code())
        tablet, state, wrote, uids = _outcome(read_tablet), _outcome(read_state), _outcome(write), _outcome(uid_fut)
        if isinstance(uids, zero_pb2.AssignedIds):
            assert uids.end_id < new_uids.start_id or uids.start_id > new_uids.end_id, (
                f"the old leader handed out uids {uids.start_id}-{uids.end_id} from a lease that never committed; "
                f"the new leader handed out {new_uids.start_id}-{new_uids.end_id}")
        served = [s.start_id for s in stamps if isinstance(s, zero_pb2.AssignedIds)]
        assert all(s > new_ts for s in served), (
            f"the resumed old leader handed out timestamps {served} at or below {new_ts}, which the new "
            f"leader had already handed out: {stamps}")
        if isinstance(tablet, zero_pb2.Tablet):
            assert tablet.group_id == group, f"stale ShouldServe from the old leader: {tablet}"
        if isinstance(state, zero_pb2.MembershipState):
            assert "claimed-after-pause" in state.groups[group].tablets and joined.id in state.groups[group].members, (
                "stale GetState from the old leader: it lacks the new leader's claim or Connect")
    finally:
        chan.close()
        c.net.heal()

    # Healed: the old leader follows; whatever it acknowledged is kept.
    until(lambda: (lambda b: b[0] == 200 and b[1].get("leader_id") == new.raft_id)(old.health()), 20,
          message="the old leader to follow the new one")
    final = write_until_ok([new.addr], lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=2), 10, "GetState")
    if isinstance(wrote, zero_pb2.ConnectResponse):
        assert any(m.addr == "dn-queued:7080" for g in final.groups.values() for m in g.members.values()), (
            "a Connect acknowledged by the old leader is not in the state")
    after = write_until_ok([old.addr], lambda s: s.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=2),
                           10, "Timestamps")
    assert after.start_id > max([new_ts, *served])


@pytest.mark.timeout(120)
def test_a_lagging_follower_never_serves_a_stale_linearizable_read(cluster: LoopbackCluster) -> None:
    c = cluster
    lead = _leader(c)
    assert c.net is not None
    lag = c.nodes[1]
    url = lag.http + "/state"
    code, before = http_json(url, timeout=5)
    assert code == 200, before
    try:
        c.net.stall(lead.name, lag.name)  # the leader's appends and read answers to it are held
        write_until_ok([lead.addr], lambda s: s.Connect(zero_pb2.ConnectRequest(addr="dn-lagged:7080"),
                                                        timeout=2), 5, "Connect")
        code, body = http_json(url, timeout=8)
        members = [m["addr"] for g in body.get("groups", {}).values() for m in g.get("members", {}).values()]
        if code == 200:
            assert "dn-lagged:7080" in members, (
                f"zero {lag.name}'s /state answered 200 without a write committed before the read: {body}")
        else:
            assert code == 503, (code, body)
    finally:
        c.net.heal()
    # Healed, the follower's read includes the write.
    until(lambda: (lambda r: r[0] == 200 and "dn-lagged:7080" in str(r[1]))(http_json(url, timeout=5)), 20,
          message="the follower's /state to include the write")
