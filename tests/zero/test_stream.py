"""StreamMembership's hub: full state in chunks, deltas per applied batch, resume,
gaps, slow watchers dropped — on a real ZeroNode, without gRPC."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from support.aio import until
from zero.errors import ResourceExhaustedError
from zero.replica.duties import ensure_cluster_identity
from zero.replica.node import NodeOptions, ZeroNode
from zero.pb import state_pb2, zero_pb2
from zero.frontdoor.stream import MembershipHub
from zero.state.chunks import CHUNK_BYTES, full_state_chunks, merge_chunk

from zeroapps import bare_node


async def _node(tmp_path) -> ZeroNode:
    node = bare_node(NodeOptions(data_dir=str(tmp_path / "zw"), my_addr="localhost:5080", tick_seconds=0.01),
                     logger=structlog.wrap_logger(logging.getLogger("test")))
    await node.start()
    await until(lambda: node.is_leader, 10, message="a leader")
    await ensure_cluster_identity(node)
    return node


def _hub(node: ZeroNode, **kw) -> MembershipHub:
    """A hub fed by the node's applied batches and state resets, as zero/app.py wires it."""
    hub = MembershipHub(node, **kw)
    node.on_applied.append(hub.on_applied)
    node.on_state_reset.append(hub.on_state_reset)
    return hub


def _connect(addr: str, group: int = 0) -> state_pb2.Proposal:
    return state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=addr, group_id=group, replicas=3))


def _claim(name: str, group: int) -> state_pb2.Proposal:
    return state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(
        tablets=[zero_pb2.Tablet(predicate=name, group_id=group)]))


class Client:
    """What a data node keeps: the state rebuilt from the stream."""

    def __init__(self) -> None:
        self.pending = zero_pb2.MembershipState()
        self.state: zero_pb2.MembershipState | None = None
        self.versions: list[int] = []
        self.owner: dict[str, int] = {}

    def feed(self, u: zero_pb2.MembershipUpdate) -> None:
        self.versions.append(u.version)
        if u.full:
            merge_chunk(self.pending, u.state)
            if u.last_chunk:
                self.state, self.pending = self.pending, zero_pb2.MembershipState()
                self.owner = {n: g for g, grp in self.state.groups.items() for n in grp.tablets}
            return
        assert self.state is not None
        for gid, g in u.state.groups.items():
            for mid, m in g.members.items():
                self.state.groups[gid].members[mid].CopyFrom(m)
            for name, t in g.tablets.items():
                old = self.owner.get(name)
                if old is not None and old != gid:
                    del self.state.groups[old].tablets[name]
                self.state.groups[gid].tablets[name].CopyFrom(t)
                self.owner[name] = gid
        for name in u.removed_tablets:
            gid = self.owner.pop(name, None)
            if gid is not None:
                del self.state.groups[gid].tablets[name]
        for mid in u.removed_members:
            for g in self.state.groups.values():
                if mid in g.members:
                    del g.members[mid]
        self.state.version = u.version
        self.state.max_uid, self.state.max_txn_ts = u.state.max_uid, u.state.max_txn_ts


async def _take(agen, client: Client, until) -> None:
    async def run() -> None:
        async for u in agen:
            client.feed(u)
            if until():
                return
    await asyncio.wait_for(run(), 10)


def _same(client: Client, node: ZeroNode) -> bool:
    want = node.state.state_copy()
    got = client.state
    if got is None or got.version != want.version:
        return False
    strip = lambda s: {g: (sorted(grp.members), {n: t.group_id for n, t in grp.tablets.items()})  # noqa: E731
                       for g, grp in s.groups.items()}
    return strip(got) == strip(want)


@pytest.mark.timeout(30)
def test_full_then_deltas_then_resume(tmp_path):
    async def main() -> None:
        node = await _node(tmp_path)
        hub = _hub(node)
        for i in range(4):
            await node.propose(_connect(f"dn{i}:7080"))
        await node.propose(_claim("name", 1))
        c = Client()
        agen = hub.stream()
        await _take(agen, c, lambda: c.state is not None)
        assert _same(c, node)
        # Deltas arrive per applied batch.
        await node.propose(_claim("age", 2))
        await node.propose(_connect("dn9:7080"))
        await _take(agen, c, lambda: _same(c, node))
        assert c.versions == sorted(c.versions)
        await agen.aclose()
        assert hub.watchers == 0
        # Resume from the last version seen: only a delta, no full state.
        seen = c.state.version
        await node.propose(_claim("email", 1))
        agen2 = hub.stream(seen, node.state.cluster_id)
        first = await asyncio.wait_for(agen2.__anext__(), 5)
        assert not first.full and "email" in first.state.groups[1].tablets
        c.feed(first)
        assert _same(c, node)
        await agen2.aclose()
        # Another cluster id, or a version the history can't serve: the full state.
        agen3 = hub.stream(seen, "some-other-cluster")
        assert (await asyncio.wait_for(agen3.__anext__(), 5)).full
        await agen3.aclose()
        agen4 = hub.stream(node.state.version + 100, node.state.cluster_id)
        assert (await asyncio.wait_for(agen4.__anext__(), 5)).full
        await agen4.aclose()
        await node.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_slow_watcher_is_dropped_and_apply_never_waits(tmp_path):
    async def main() -> None:
        node = await _node(tmp_path)
        hub = _hub(node, queue_limit=5)
        await node.propose(_connect("dn0:7080"))
        agen = hub.stream()
        first = await asyncio.wait_for(agen.__anext__(), 5)
        assert first.full
        # The watcher reads nothing while many changes apply: the apply loop goes on.
        for i in range(20):
            await node.propose(_claim(f"t{i}", 1))
        assert hub.watchers == 0
        with pytest.raises(ResourceExhaustedError):
            while True:
                await asyncio.wait_for(agen.__anext__(), 5)
        await node.stop()

    asyncio.run(main())


def test_full_state_of_100k_tablets_is_chunked_under_1mib():
    st = zero_pb2.MembershipState(version=7, cluster_id="c", max_uid=10)
    for g in range(1, 4):
        st.groups[g]
    for i in range(100_000):
        g = 1 + i % 3
        st.groups[g].tablets[f"predicate.{i:06d}"].CopyFrom(
            zero_pb2.Tablet(predicate=f"predicate.{i:06d}", group_id=g, size_bytes=i))
    for m in range(1, 1001):
        st.groups[1 + m % 3].members[m].CopyFrom(zero_pb2.Member(id=m, group_id=1 + m % 3, addr=f"h{m}:7080"))
    chunks = full_state_chunks(st)
    assert len(chunks) > 1
    assert all(c.ByteSize() <= CHUNK_BYTES for c in chunks)
    assert [c.last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
    merged = zero_pb2.MembershipState()
    for c in chunks:
        merge_chunk(merged, c.state)
    assert merged == st


def test_chunks_leave_room_for_liveness_filled_in_afterwards():
    """With `slack` per member and zero, chunks filled with the largest liveness values
    after chunking still fit the limit (the hub chunks the live state, then overlays)."""
    from zero.state.chunks import LIVENESS_SLACK, iter_full_state_chunks

    st = zero_pb2.MembershipState(version=7, cluster_id="c")
    for z in range(1, 6):
        st.zeros[z].CopyFrom(zero_pb2.Member(id=z, addr=f"z{z}:5080"))
    for m in range(1, 30_001):
        st.groups[1 + m % 3].members[m].CopyFrom(zero_pb2.Member(id=m, group_id=1 + m % 3, addr=f"h{m}:7080"))
    for i in range(20_000):
        st.groups[1 + i % 3].tablets[f"p.{i:06d}"].CopyFrom(zero_pb2.Tablet(predicate=f"p.{i:06d}", group_id=1 + i % 3))
    merged = zero_pb2.MembershipState()
    n = 0
    for u in iter_full_state_chunks(st, slack=LIVENESS_SLACK):
        for g in u.state.groups.values():
            for m in g.members.values():
                m.healthy, m.leader, m.last_heartbeat_ms = True, True, -1  # -1: the longest varint
        for z in u.state.zeros.values():
            z.healthy, z.leader, z.last_heartbeat_ms = True, True, -1
        assert u.ByteSize() <= CHUNK_BYTES
        merge_chunk(merged, u.state)
        n += 1
    assert n > 1 and len(merged.groups[1].members) == 10_000 and len(merged.zeros) == 5


@pytest.mark.timeout(60)
def test_state_bytes_and_full_chunks_match_the_state_with_liveness(tmp_path):
    """GetState's bytes (built a group at a time) and the stream's full state (chunked
    from the live state, liveness filled per chunk) both equal the state with the
    overlay applied to a copy, the way they were built before."""
    async def main() -> None:
        node = await _node(tmp_path)
        for i in range(40):
            await node.propose(_connect(f"dn{i}:7080"))
        for i in range(200):
            await node.propose(_claim(f"pred.{i}", 1 + i % 3))

        def overlay(s: zero_pb2.MembershipState) -> zero_pb2.MembershipState:
            for g in s.groups.values():
                for m in g.members.values():
                    m.healthy, m.last_heartbeat_ms = m.id % 2 == 0, 1000 + m.id
            for z in s.zeros.values():
                z.leader = True
            return s

        hub = _hub(node, overlay=overlay)
        want = overlay(node.state.state_copy())
        assert zero_pb2.MembershipState.FromString(hub.state_bytes()) == want
        merged = zero_pb2.MembershipState()
        for m in hub._full():
            merge_chunk(merged, m.obj.state)
        assert merged == want
        await node.stop()

    asyncio.run(main())
