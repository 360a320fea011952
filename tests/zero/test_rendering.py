"""The whole state kept a group at a time (zero/frontdoor/rendering.py, issue 23 goal 1):
after any sequence of changes the bytes parse to exactly the whole state with liveness
filled in, and a Connect re-renders only the group it joined.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as hs

from zero.errors import ZeroError
from zero.frontdoor.rendering import MANY_TABLETS, RenderedState
from zero.pb import state_pb2, zero_pb2
from zero.state.machine import ZeroState

P = state_pb2.Proposal


class _Liveness:
    """An overlay as Liveness.overlay is: fills each member's flags from what it knows."""

    def __init__(self) -> None:
        self.healthy: set[int] = set()

    def __call__(self, state: zero_pb2.MembershipState) -> zero_pb2.MembershipState:
        for g in state.groups.values():
            for m in g.members.values():
                m.healthy = m.id in self.healthy
                m.last_heartbeat_ms = 1000 + m.id if m.healthy else 0
        for z in state.zeros.values():
            z.healthy = True
        return state


class _Zero:
    def __init__(self) -> None:
        self.state = ZeroState()
        self.index = 0
        self.live = _Liveness()
        self.rendered = RenderedState(self.live)
        self.apply(P(add_zero=state_pb2.AddZero(raft_id=1, addr="z1:5080")))

    def apply(self, p: state_pb2.Proposal) -> bool:
        self.index += 1
        try:
            a = self.state.apply(self.index, p)
        except ZeroError:
            return False
        self.rendered.applied(self.state, a.delta)
        return True

    def expected(self) -> zero_pb2.MembershipState:
        return self.live(self.state.state_copy())

    def check(self) -> None:
        got = zero_pb2.MembershipState.FromString(self.rendered.render(self.state))
        assert got == self.expected()


def _step(z: _Zero, rng: random.Random, n: int) -> None:
    members = z.state.member_ids()
    groups = sorted(z.state.groups)
    op = rng.randrange(9)
    if op <= 1 or not members:
        z.apply(P(connect=state_pb2.ConnectMember(addr=f"dn{n}:7080", replicas=rng.choice((1, 2, 3)))))
    elif op == 2:
        z.apply(P(claim_tablets=state_pb2.ClaimTablets(tablets=[
            zero_pb2.Tablet(predicate=f"p{rng.randrange(40)}", group_id=rng.choice(groups)) for _ in range(3)])))
    elif op == 3:
        z.apply(P(force_tablet=state_pb2.ForceTablet(predicate=f"p{rng.randrange(40)}", group_id=rng.choice(groups))))
    elif op == 4:
        z.apply(P(delete_tablet=state_pb2.DeleteTablet(predicate=f"p{rng.randrange(40)}")))
    elif op == 5:
        mid = rng.choice(members)
        m = z.state.member(mid)
        assert m is not None
        z.apply(P(remove_member=state_pb2.RemoveMember(node_id=mid, group_id=m.group_id)))
    elif op == 6:
        gid = rng.choice(groups)
        names = list(z.state.groups[gid].tablets)
        if names:
            z.apply(P(tablet_sizes=zero_pb2.TabletSizes(group_id=gid, sizes={rng.choice(names): rng.randrange(1 << 30)})))
    elif op == 7:
        changed = set(rng.sample(members, min(len(members), 2)))
        z.live.healthy ^= changed
        z.rendered.liveness_changed(z.state, changed)
    else:
        z.apply(P(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.UID, count=10)))


@settings(max_examples=60, deadline=None)
@given(hs.integers(0, 2**32), hs.integers(1, 5))
def test_after_any_changes_the_bytes_are_the_whole_state(seed: int, every: int) -> None:
    rng = random.Random(seed)
    z = _Zero()
    for n in range(80):
        _step(z, rng, n)
        if n % every == 0:
            z.check()
    z.check()


def test_a_connect_renders_only_its_group() -> None:
    z = _Zero()
    for i in range(200):
        z.apply(P(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=1)))
    z.check()
    before = z.rendered.rendered_groups
    z.apply(P(connect=state_pb2.ConnectMember(addr="new:7080", replicas=1)))
    mid = max(z.state.member_ids())
    z.live.healthy.add(mid)
    z.rendered.liveness_changed(z.state, {mid})  # its first heartbeat
    z.check()
    assert z.rendered.rendered_groups - before == 1
    # Nothing changed: nothing is rendered, the same bytes are shared.
    b1 = z.rendered.render(z.state)
    assert z.rendered.render(z.state) is b1 and z.rendered.rendered_groups - before == 1


def test_unknown_liveness_changes_a_new_state_and_bulk_claims_render_everything() -> None:
    z = _Zero()
    for i in range(20):
        z.apply(P(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=1)))
    z.check()
    groups = len(z.state.groups)
    for change in ("liveness", "restore", "bulk"):
        before = z.rendered.rendered_groups
        if change == "liveness":
            z.live.healthy = set(z.state.member_ids())
            z.rendered.liveness_changed(z.state, None)
        elif change == "restore":
            z.state = ZeroState.restore(z.state.snapshot())
            z.rendered.forget()
        else:
            z.apply(P(claim_tablets=state_pb2.ClaimTablets(tablets=[
                zero_pb2.Tablet(predicate=f"bulk{i}", group_id=1 + i % groups) for i in range(MANY_TABLETS + 1)])))
        z.check()
        assert z.rendered.rendered_groups - before == groups, change
