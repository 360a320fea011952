"""The data-node API under load and over time (issue 6), against a ZeroApp in this
process on free loopback ports, through real gRPC and zero.client:

- contended claims of the same tablets from many groups and clients: one owner each,
  and no answer any client got is contradicted (SPEC semantics 1);
- Connect's idempotency and refusals, group assignment with --replicas 3 (learners do
  not count), UpdateTabletSizes proposing only changes over 10%;
- a silent member turns unhealthy, and that reaches a StreamMembership watcher;
- stream resume from since_version (a delta only) and the full state for another
  cluster id; a 100,000-tablet state in chunks of at most 1 MiB, reassembled equal to
  GetState; many concurrent watchers all see a claim within 1 s.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from zero.app import ZeroApp
from zero.client import ZeroClient
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.state.chunks import CHUNK_BYTES, merge_chunk

from zeroapps import one_zero
from support.aio import until

SC = grpc.StatusCode
BIG = [("grpc.max_receive_message_length", 64 << 20)]


def run_app(tmp_path, body: Callable[[ZeroApp, str], Awaitable[None]], **cfg: object) -> None:
    """Run `body(app, addr)` against a fresh single-zero app that leads."""
    async def main() -> None:
        app = await one_zero(tmp_path, **cfg)
        try:
            await body(app, f"127.0.0.1:{app.grpc_port}")
        finally:
            await app.stop()

    asyncio.run(main())


async def _full_state(stream: grpc.aio.UnaryStreamCall) -> tuple[zero_pb2.MembershipState, list[int]]:
    """Read a full state off `stream` up to its last chunk; also each chunk's size."""
    st, sizes = zero_pb2.MembershipState(), []
    while True:
        u = await asyncio.wait_for(stream.read(), 10)
        assert u is not grpc.aio.EOF and u.full, u
        sizes.append(u.ByteSize())
        merge_chunk(st, u.state)
        if u.last_chunk:
            return st, sizes


def _without_zero_clock(st: zero_pb2.MembershipState) -> zero_pb2.MembershipState:
    # A zero reports its own liveness as "now": it differs between two reads.
    out = zero_pb2.MembershipState()
    out.CopyFrom(st)
    for z in out.zeros.values():
        z.last_heartbeat_ms = 0
    return out


# -- contended claims ------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_contended_claims_one_owner_and_no_answer_contradicted(tmp_path):
    tablets = [f"pred.{i:03d}" for i in range(200)]

    async def body(app: ZeroApp, addr: str) -> None:
        async with ZeroClient(addr) as admin:
            groups = [(await admin.connect(f"dn{g}:7080")).member.group_id for g in range(8)]
        assert sorted(groups) == list(range(1, 9))
        answers: dict[str, set[int]] = {t: set() for t in tablets}
        lookups: dict[str, set[int]] = {t: set() for t in tablets}
        rng = random.Random(6)

        async def client(n: int) -> None:
            gid = groups[n % 8]
            order = tablets[:]
            rng.shuffle(order)
            async with ZeroClient(addr) as zc:
                i = 0
                while i < len(order):
                    k = rng.choice((1, 1, 5, 20))  # single ShouldServe calls and bulk Tablets
                    part, i = order[i:i + k], i + k
                    if rng.random() < 0.15:  # a lookup (group 0) never claims
                        for t in await zc.tablets(part, 0):
                            lookups[t.predicate].add(t.group_id)
                        continue
                    got = [await zc.should_serve(part[0], gid)] if k == 1 else await zc.tablets(part, gid)
                    assert [t.predicate for t in got] == part  # one answer per tablet, in order
                    for t in got:
                        assert t.group_id, f"a claim of {t.predicate} came back unowned"
                        answers[t.predicate].add(t.group_id)

        await asyncio.gather(*(client(n) for n in range(32)))
        async with ZeroClient(addr) as zc:
            st = await zc.get_state()
        owners: dict[str, list[int]] = {}
        for gid, g in st.groups.items():
            for name in g.tablets:
                owners.setdefault(name, []).append(gid)
        assert set(owners) == set(tablets)
        for t in tablets:
            assert len(owners[t]) == 1, f"{t} owned by {owners[t]}"
            assert answers[t] <= {owners[t][0]}, f"{t}: answers {answers[t]} vs owner {owners[t][0]}"
            assert lookups[t] <= {0, owners[t][0]}, f"{t}: lookups {lookups[t]} vs owner {owners[t][0]}"
        # Claims went to several groups: the contention was real.
        assert len({o[0] for o in owners.values()}) > 1

    run_app(tmp_path, body)


# -- Connect, groups, tablet sizes ------------------------------------------------------------------
async def _refused(code: grpc.StatusCode, app: ZeroApp, call: Awaitable[object]) -> str:
    """The call fails with `code` and leaves the replicated state unchanged."""
    assert app.node is not None
    before = app.node.state.snapshot()
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    assert ei.value.code() == code, (ei.value.code(), ei.value.details())
    assert app.node.state.snapshot() == before, "a refused Connect changed the state"
    return ei.value.details() or ""


@pytest.mark.timeout(30)
def test_connect_is_idempotent_and_refuses_mismatched_unknown_and_removed_ids(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        async with ZeroClient(addr) as zc:
            a = (await zc.connect("dn-a:7080")).member
            b = (await zc.connect("dn-b:7080")).member
            # Same address, id 0: the same member, nothing new.
            v = app.node.state.version
            again = (await zc.connect("dn-a:7080")).member
            assert (again.id, again.group_id, again.addr) == (a.id, a.group_id, a.addr)
            # Its own id and address: the same member too.
            assert (await zc.connect("dn-a:7080", member_id=a.id)).member.id == a.id
            assert app.node.state.version == v
            # A non-zero id that does not hold the address.
            msg = await _refused(SC.FAILED_PRECONDITION, app, zc.connect("dn-a:7080", member_id=b.id))
            assert "dn-a:7080" in msg and str(a.id) in msg
            # An id nobody has.
            msg = await _refused(SC.NOT_FOUND, app, zc.connect("dn-new:7080", member_id=10_000))
            assert "10000" in msg
            # A removed id never rejoins, whatever address it brings.
            await zc.call("RemoveNode", zero_pb2.RemoveNodeRequest(node_id=b.id, group_id=b.group_id), admin=True)
            msg = await _refused(SC.FAILED_PRECONDITION, app, zc.connect("dn-b:7080", member_id=b.id))
            assert "removed" in msg
            await _refused(SC.FAILED_PRECONDITION, app, zc.connect("dn-other:7080", member_id=b.id))
            # Its address is free again, but a new member gets a new id: ids are never reused.
            c = (await zc.connect("dn-b:7080")).member
            assert c.id > b.id and c.id != a.id

    run_app(tmp_path, body)


@pytest.mark.timeout(30)
def test_group_assignment_with_three_replicas_learners_do_not_count(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        async with ZeroClient(addr) as zc:
            async def join(name: str, **kw: object) -> zero_pb2.Member:
                return (await zc.connect(f"{name}:7080", **kw)).member  # type: ignore[arg-type]

            assert [(await join(n)).group_id for n in ("v1", "v2")] == [1, 1]
            learner = await join("l1", group_id=1, learner=True)
            assert learner.group_id == 1 and learner.learner
            # The learner does not fill group 1: the third voter still goes there.
            assert (await join("v3")).group_id == 1
            assert (await join("v4")).group_id == 2
            # A full group refuses a voter that asks for it; it accepts a learner.
            msg = await _refused(SC.FAILED_PRECONDITION, app, join("v5", group_id=1))
            assert "group 1" in msg
            assert (await join("l2", group_id=1, learner=True)).group_id == 1
            # A requested group with room, and a learner of a group that does not exist.
            assert (await join("v6", group_id=2)).group_id == 2
            await _refused(SC.NOT_FOUND, app, join("l3", group_id=9, learner=True))
            st = await zc.get_state()
            voters = {g: sum(not m.learner for m in grp.members.values()) for g, grp in st.groups.items()}
            assert voters == {1: 3, 2: 2}
            assert sum(m.learner for m in st.groups[1].members.values()) == 2
            # A voter leaves group 1: the next new member fills it before group 2.
            v1 = next(m for m in st.groups[1].members.values() if m.addr == "v1:7080")
            await zc.call("RemoveNode", zero_pb2.RemoveNodeRequest(node_id=v1.id, group_id=1), admin=True)
            assert (await join("v7")).group_id == 1
            assert (await join("v8")).group_id == 2
            assert (await join("v9")).group_id == 3

    run_app(tmp_path, body, replicas=3)


@pytest.mark.timeout(30)
def test_update_tablet_sizes_proposes_only_changes_over_ten_percent(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        node = app.node
        assert node is not None
        async with ZeroClient(addr) as zc:
            g1 = (await zc.connect("dn1:7080")).member.group_id
            g2 = (await zc.connect("dn2:7080")).member.group_id
            await zc.tablets(["t", "u"], g1)
            await zc.should_serve("w", g2)

            async def report(sizes: dict[str, int], group: int = g1) -> bool:
                """True when the report changed the state (a proposal was applied)."""
                v = node.state.version
                await zc.update_tablet_sizes(group, sizes)
                return node.state.version != v

            assert await report({"t": 1000})                  # the first size of a tablet
            assert not await report({"t": 1050})              # +5%
            assert not await report({"t": 1100})              # +10% exactly: not over
            assert not await report({"t": 900})               # -10%
            assert await report({"t": 1101})                  # over 10%
            assert node.state.tablet("t").size_bytes == 1101
            assert not await report({"t": 1101, "u": 0})      # no change; an empty tablet stays 0
            assert await report({"t": 1101, "u": 5})          # one changed tablet is enough
            assert not await report({"w": 10**9})             # another group's tablet: stale, ignored
            assert not await report({"nobody": 7})            # an unowned tablet: ignored
            assert node.state.tablet("w").size_bytes == 0
            assert node.state.tablet("u").size_bytes == 5
            assert node.state.tablet("t").size_bytes == 1101

    run_app(tmp_path, body)


# -- liveness on the stream --------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_silent_member_turns_unhealthy_and_the_watcher_sees_it(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        # RunConfig has no liveness flag (LIVENESS_WINDOW is 10 s); the in-process
        # Liveness takes a shorter window so the test does not wait 10 s. It must stay
        # above the app's liveness pass period (HEALTH_PERIOD, 0.5 s): a member healthy
        # only between two passes is never published as healthy, so its fall is not
        # published either (its full-state value stays healthy).
        assert app.liveness is not None
        app.liveness.window = 1.0
        async with ZeroClient(addr) as zc, ZeroClient(addr) as watcher:
            m = (await zc.connect("dn1:7080")).member
            watcher.start_watch()
            await watcher.wait_synced()

            def healthy() -> bool | None:
                st = watcher.view.state
                if st is None or m.id not in st.groups[m.group_id].members:
                    return None
                return st.groups[m.group_id].members[m.id].healthy

            await zc.heartbeat(m.id, m.group_id, leader=True)
            await until(lambda: healthy() is True, 5, message="healthy on the stream")
            t0 = time.monotonic()
            # Silence: no heartbeat. Unhealthy within the window plus the zero's 0.5 s
            # liveness pass, and still a member (never removed silently).
            await until(lambda: healthy() is False, 5, message="unhealthy on the stream")
            assert time.monotonic() - t0 >= 0.9
            st = await zc.get_state()
            gone = st.groups[m.group_id].members[m.id]
            assert not gone.healthy and not gone.leader and gone.last_heartbeat_ms > 0
            assert watcher.view.state.groups[m.group_id].members[m.id].last_heartbeat_ms == gone.last_heartbeat_ms
            # A heartbeat brings it back.
            await zc.heartbeat(m.id, m.group_id)
            await until(lambda: healthy() is True, 5, message="healthy again on the stream")

    run_app(tmp_path, body)


# -- stream resume -------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_stream_resumes_with_a_delta_and_another_cluster_gets_the_full_state(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        async with ZeroClient(addr) as zc, grpc.aio.insecure_channel(addr, options=BIG) as ch:
            stub = zero_pb2_grpc.ZeroStub(ch)
            m1 = (await zc.connect("dn1:7080")).member
            await zc.tablets([f"old{i}" for i in range(50)], m1.group_id)
            call = stub.StreamMembership(zero_pb2.StreamMembershipRequest())
            st, _ = await _full_state(call)
            seen, cid = st.version, st.cluster_id
            assert cid and len(st.groups[m1.group_id].tablets) == 50
            call.cancel()  # the watcher disconnects
            # Changes while it is away.
            m2 = (await zc.connect("dn2:7080")).member
            await zc.should_serve("new", m2.group_id)
            now = app.node.state.version
            assert now > seen

            # Resume: one delta with only what changed, at the current version.
            call = stub.StreamMembership(zero_pb2.StreamMembershipRequest(since_version=seen, cluster_id=cid))
            u = await asyncio.wait_for(call.read(), 5)
            assert not u.full and u.version == now and u.cluster_id == cid
            assert set(u.state.groups) == {m2.group_id}
            assert set(u.state.groups[m2.group_id].members) == {m2.id}
            assert set(u.state.groups[m2.group_id].tablets) == {"new"}
            assert not u.removed_tablets and not u.removed_members
            # Applying it to the old state gives today's state.
            st.groups[m2.group_id].members[m2.id].CopyFrom(u.state.groups[m2.group_id].members[m2.id])
            st.groups[m2.group_id].tablets["new"].CopyFrom(u.state.groups[m2.group_id].tablets["new"])
            st.version = u.version
            assert _without_zero_clock(st) == _without_zero_clock(await zc.get_state())
            # The stream goes on with deltas.
            await zc.should_serve("later", m1.group_id)
            u = await asyncio.wait_for(call.read(), 5)
            assert not u.full and set(u.state.groups[m1.group_id].tablets) == {"later"}
            call.cancel()

            # Resuming at the current version: an empty delta, nothing resent.
            call = stub.StreamMembership(zero_pb2.StreamMembershipRequest(
                since_version=app.node.state.version, cluster_id=cid))
            u = await asyncio.wait_for(call.read(), 5)
            assert not u.full and not u.state.groups and u.version == app.node.state.version
            call.cancel()

            # Another cluster's id (a data node that moved clusters), or a version from
            # the future: the full state again.
            for req in (zero_pb2.StreamMembershipRequest(since_version=seen, cluster_id="another-cluster"),
                        zero_pb2.StreamMembershipRequest(since_version=now + 1000, cluster_id=cid)):
                call = stub.StreamMembership(req)
                full, _ = await _full_state(call)
                assert full.cluster_id == cid and "old7" in full.groups[m1.group_id].tablets
                assert "new" in full.groups[m2.group_id].tablets
                call.cancel()

    run_app(tmp_path, body)


# -- a big state ---------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_100k_tablets_stream_in_chunks_of_at_most_1mib_equal_to_get_state(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        async with ZeroClient(addr) as zc, grpc.aio.insecure_channel(addr, options=BIG) as ch:
            stub = zero_pb2_grpc.ZeroStub(ch)
            members = [(await zc.connect(f"dn{i}:7080")).member for i in range(10)]
            gids = [m.group_id for m in members]
            names = [f"graph.predicate.{i:06d}" for i in range(100_000)]
            per = 10_000  # the largest Tablets request allowed
            for k in range(0, len(names), per):
                await zc.call("Tablets", zero_pb2.TabletsRequest(tablets=[
                    zero_pb2.Tablet(predicate=n, group_id=gids[(k // per) % len(gids)])
                    for n in names[k:k + per]]), timeout=30)
            await zc.update_tablet_sizes(gids[0], {n: 1 << 20 for n in names[:1000]})
            # Heartbeats just before the two reads: the claims can take the whole 10 s
            # liveness window on a loaded machine, and members expiring between the
            # stream's read and GetState's would differ in `healthy`, not in chunking.
            for m in members:
                await zc.heartbeat(m.id, m.group_id)

            call = stub.StreamMembership(zero_pb2.StreamMembershipRequest())
            streamed, sizes = await _full_state(call)
            call.cancel()
            got = await stub.GetState(zero_pb2.GetStateRequest(), timeout=30)
            assert len(sizes) > 2, sizes
            assert max(sizes) <= CHUNK_BYTES, max(sizes)
            assert sum(len(g.tablets) for g in streamed.groups.values()) == 100_000
            assert streamed.version == got.version
            assert _without_zero_clock(streamed) == _without_zero_clock(got)

    run_app(tmp_path, body)


# -- many watchers -------------------------------------------------------------------------------------
WATCHERS = 500


@pytest.mark.timeout(60)
def test_many_watchers_all_see_a_claim_within_one_second(tmp_path):
    async def body(app: ZeroApp, addr: str) -> None:
        assert app.hub is not None
        channels = [grpc.aio.insecure_channel(addr) for _ in range(8)]
        seen_at: dict[int, float] = {}
        synced: set[int] = set()

        async def watch(i: int) -> None:
            stub = zero_pb2_grpc.ZeroStub(channels[i % len(channels)])
            async for u in stub.StreamMembership(zero_pb2.StreamMembershipRequest()):
                if u.last_chunk:
                    synced.add(i)
                if not u.full and any("hot" in g.tablets for g in u.state.groups.values()):
                    seen_at[i] = time.monotonic()
                    return

        try:
            async with ZeroClient(addr) as zc:
                gid = (await zc.connect("dn1:7080")).member.group_id
                tasks = [asyncio.create_task(watch(i)) for i in range(WATCHERS)]
                await until(lambda: len(synced) == WATCHERS and app.hub.watchers >= WATCHERS, 30,
                            message="all watchers synced")
                t0 = time.monotonic()
                assert (await zc.should_serve("hot", gid)).group_id == gid
                await asyncio.wait_for(asyncio.gather(*tasks), 10)
            late = max(seen_at.values()) - t0
            assert len(seen_at) == WATCHERS
            assert late <= 1.0, f"the last of {WATCHERS} watchers saw the claim after {late:.3f} s"
        finally:
            for c in channels:
                await c.close()

    run_app(tmp_path, body)
