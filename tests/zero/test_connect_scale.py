"""Connect does not scan the groups (issue 23): joining the 5,000th data node costs about
what joining the 250th does. In process, on ZeroState alone.

--replicas 1 is the worst case for a scan: every member starts its own group, so the
5,000th Connect would look at 4,999 full groups (tens of ms each on the reference
machine, against some 20 µs with the index). The bound is generous: a scan makes the
5,000th some 20 times the 250th.
"""

from __future__ import annotations

import statistics
import time

from zero.pb import state_pb2
from zero.state.machine import ZeroState

P = state_pb2.Proposal
BATCH = 200


def _fill(s: ZeroState, first: int, last: int, replicas: int) -> None:
    for i in range(first, last + 1):
        s.apply(i, P(connect=state_pb2.ConnectMember(addr=f"n{i}:7080", replicas=replicas)))


def _timed_connect(s: ZeroState, i: int, replicas: int) -> float:
    p = P(connect=state_pb2.ConnectMember(addr=f"n{i}:7080", replicas=replicas))
    t0 = time.perf_counter()
    s.apply(i, p)
    return time.perf_counter() - t0


def test_the_5000th_connect_costs_about_what_the_250th_does() -> None:
    for replicas in (1, 3):
        small, big = ZeroState(), ZeroState()
        _fill(small, 1, 249, replicas)
        _fill(big, 1, 4999, replicas)
        # Interleaved, so a neighbour's load on the shared machine weighs on both alike.
        early, late = [], []
        for i in range(5000, 5000 + BATCH):
            early.append(_timed_connect(small, i, replicas))
            late.append(_timed_connect(big, i, replicas))
        e, l = statistics.median(early), statistics.median(late)
        assert len(big.member_ids()) == 4999 + BATCH
        assert l < 3 * e + 30e-6, (
            f"replicas={replicas}: a Connect at 5,000 members takes {l * 1e6:.0f} µs, "
            f"at 250 {e * 1e6:.0f} µs: is Connect scanning the groups again?")


def test_connect_fills_the_lowest_group_with_room_first() -> None:
    """The choice the index makes is the scan's: the lowest group id with fewer than the
    proposal's replicas voters, else a new group max + 1, whatever replicas it carries."""
    s = ZeroState()
    _fill(s, 1, 9, 3)  # groups 1..3, full at 3 voters
    assert sorted(s.groups) == [1, 2, 3]
    gid_of = {mid: s.member(mid).group_id for mid in s.member_ids()}  # type: ignore[union-attr]
    s.apply(10, P(remove_member=state_pb2.RemoveMember(node_id=5, group_id=gid_of[5])))
    s.apply(11, P(connect=state_pb2.ConnectMember(addr="a:1", replicas=2)))  # none below 2: new group 4
    s.apply(12, P(connect=state_pb2.ConnectMember(addr="b:1", replicas=3)))  # group 2 has room for 3
    s.apply(13, P(connect=state_pb2.ConnectMember(addr="c:1", replicas=2)))  # group 4 has 1 voter
    s.apply(14, P(connect=state_pb2.ConnectMember(addr="d:1", replicas=5)))  # group 1 has room for 5
    got = [s.member_by_addr(a).group_id for a in ("a:1", "b:1", "c:1", "d:1")]  # type: ignore[union-attr]
    assert got == [4, 2, 4, 1]
