"""Disaster recovery (issue 12): backup files and their refusals, backup under load,
restore into a fresh cluster, force-new-cluster after losing a majority, versions.

Clusters here are ZeroApps (gRPC + peer transport) in one process on loopback; the
rolling restart with real processes is in tests/cluster/test_recovery_processes.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import shutil
import struct

import grpc
import pytest
import structlog

from zero.ops import backup
from zero import cli
from zero.ops import recovery
from zero.state import versions
from zero.app import StartupError, ZeroApp
from zero.config import RunConfig
from zero.client import ZeroClient
from zero.errors import FailedPreconditionError
from zero.replica.identity import IDENTITY_FILE, Identity, save_identity
from zero.replica.node import NodeOptions
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.pb import state_pb2, zero_pb2
from zero.state.machine import ZeroState

from support import free_port, free_ports
from support.aio import until
from zeroapps import bare_node

TICK, ELECTION = 0.02, 10


def _logger(name: str):  # type: ignore[no-untyped-def]
    return structlog.wrap_logger(logging.getLogger(name)).bind(zero=name)


async def _app(data_dir, port: int = 0, peer: str = "", **kw) -> ZeroApp:  # type: ignore[no-untyped-def]
    port = port or free_port()
    cfg = RunConfig(data_dir=str(data_dir), grpc_addr=f"127.0.0.1:{port}", http_addr="127.0.0.1:0",
                    my=f"127.0.0.1:{port}", tick=TICK, election_ticks=ELECTION, log_format="json", peer=peer,
                    rebalance_interval=0, **kw)
    app = ZeroApp(cfg, log_stream=io.StringIO())
    await app.start()
    return app


def _addr(app: ZeroApp) -> str:
    return f"127.0.0.1:{app.grpc_port}"


async def _cluster(root, n: int = 3) -> list[ZeroApp]:  # type: ignore[no-untyped-def]
    first = await _app(root / "z1")
    await until(lambda: first.node.is_leader and 1 in first.node.state._state.zeros, 20, message="bootstrap")
    apps = [first]
    for i in range(1, n):
        apps.append(await _app(root / f"z{i + 1}", peer=_addr(first)))
    await until(lambda: all(a.node.leader_id for a in apps) and len(first.node.state._state.zeros) == n
                and len(_leader(apps).node.raft_status().voters) == n, 20, message=f"{n} voters")
    return apps


def _leader(apps: list[ZeroApp]) -> ZeroApp:
    return next(a for a in apps if a.node is not None and a.node.is_leader)


async def _stop(apps: list[ZeroApp]) -> None:
    for a in apps:
        await a.stop()


class Load:
    """Clients claiming tablets, connecting members and leasing ids and timestamps,
    recording what was acknowledged and when."""

    def __init__(self, addrs: list[str]) -> None:
        self.client = ZeroClient(addrs, retry_deadline=20.0, rng=random.Random(7))
        self.tablets: dict[str, int] = {}  # acknowledged claims, in order
        self.members: list[int] = []
        self.uids: list[tuple[int, int]] = []
        self.ts: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._n = 0

    def start(self, workers: int = 4) -> None:
        self._tasks = [asyncio.get_running_loop().create_task(self._work(w)) for w in range(workers)]

    async def _work(self, w: int) -> None:
        c = self.client
        while not self._stop.is_set():
            self._n += 1
            i = self._n
            try:
                if i % 4 == 0:
                    r = await c.connect(f"dn{w}-{i}:7080")
                    self.members.append(r.member.id)
                    t = await c.should_serve(f"t{w}-{i}", r.member.group_id)
                    self.tablets[t.predicate] = t.group_id
                elif i % 4 == 1:
                    self.uids.append(await c.assign_ids(zero_pb2.UID, 7))
                else:
                    self.ts.append((await c.timestamps(1))[0])
            except grpc.aio.AioRpcError as e:
                self.errors.append(e)
            await asyncio.sleep(0.002)

    def max_id(self) -> int:
        return max([e for _, e in self.uids] + self.ts + [0])

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.client.close()


def _admin(argv: list[str]) -> tuple[int, str, str]:
    ns = cli.build_parser().parse_args(["admin", *argv])
    out, err = io.StringIO(), io.StringIO()
    from zero.ops.admin import run_admin
    code = run_admin(ns, out, err)
    return code, out.getvalue(), err.getvalue()


def _restore(argv: list[str]) -> tuple[int, str, str]:
    ns = cli.build_parser().parse_args(["restore", *argv])
    out, err = io.StringIO(), io.StringIO()
    return recovery.run_restore(ns, out, err), out.getvalue(), err.getvalue()


def _sample_state() -> ZeroState:
    s = ZeroState()
    i = 0

    def ap(**kw):  # type: ignore[no-untyped-def]
        nonlocal i
        i += 1
        return s.apply(i, state_pb2.Proposal(**kw))

    ap(set_cluster_id=state_pb2.SetClusterId(cluster_id="c-sample"))
    ap(add_zero=state_pb2.AddZero(raft_id=1, addr="z1:5080", version=1))
    ap(add_zero=state_pb2.AddZero(raft_id=2, addr="z2:5080", version=1))
    for g in range(1, 4):
        ap(connect=state_pb2.ConnectMember(addr=f"dn{g}:7080", group_id=g, replicas=1))
        ap(claim_tablets=state_pb2.ClaimTablets(tablets=[zero_pb2.Tablet(predicate=f"p{g}", group_id=g)]))
    ap(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.UID, count=5000))
    ap(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.TIMESTAMP, count=300))
    ap(remove_zero=state_pb2.RemoveZero(raft_id=2))
    return s


# -- the file format -------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_backup_file_roundtrip_and_refusals(tmp_path) -> None:
    st = _sample_state()
    data = backup.encode(st.snapshot(), cluster_id="c-sample", index=40, term=3, leader_id=1)
    b = backup.decode(data)
    assert (b.header.cluster_id, b.header.raft_index, b.header.raft_term, b.header.format) == ("c-sample", 40, 3, 1)
    assert b.state.snapshot() == st.snapshot() and b.header.max_uid == 5000 and b.header.max_txn_ts == 300

    def refused(blob: bytes, words: str) -> None:
        with pytest.raises(backup.BackupError, match=words):
            backup.decode(blob)

    meta_len = struct.unpack_from("<I", data, 12)[0]
    refused(data[:5], "truncated")
    refused(data[:20], "truncated")
    refused(data[:backup.HEADER_SIZE + meta_len - 1], "truncated in the header")
    refused(data[:-1], r"truncated: the body is .* the header says")
    refused(data[:len(data) // 2], "truncated")
    refused(data + b"x", "unexpected bytes after the body")
    refused(b"PK\x03\x04" + data[4:], "not a zero backup")
    flip = bytearray(data)
    flip[-10] ^= 0x40
    refused(bytes(flip), r"body is corrupt \(checksum mismatch\)")
    flip = bytearray(data)
    flip[backup.HEADER_SIZE + 2] ^= 0x01
    refused(bytes(flip), "header is corrupt")
    newer = bytearray(data)
    newer[8:10] = struct.pack("<H", backup.FORMAT + 1)
    refused(bytes(newer), "format 2 is newer than this zero reads")

    # The CLI checks a file without a cluster: exit 0, or 1 naming what is wrong.
    good, bad = tmp_path / "good.zbk", tmp_path / "bad.zbk"
    good.write_bytes(data)
    bad.write_bytes(data[:-100])
    code, out, _ = _admin(["backup", "--verify", str(good)])
    assert code == 0 and "ok" in out and "c-sample" in out
    code, out, _ = _admin(["backup", "--verify", str(good), "--json"])
    assert code == 0 and json.loads(out)["raft_index"] == "40"  # 64-bit: a string, as in proto3 JSON
    code, _, err = _admin(["backup", "--verify", str(bad)])
    assert code == 1 and "truncated" in err and str(bad) in err
    code, _, err = _admin(["backup", "--verify", str(tmp_path / "missing.zbk")])
    assert code == 1 and "cannot read" in err


@pytest.mark.timeout(30)
def test_restore_rewrites_membership_and_continues_leases(tmp_path) -> None:
    st = _sample_state()
    path = tmp_path / "b.zbk"
    path.write_bytes(backup.encode(st.snapshot(), cluster_id="c-sample", index=40, term=3))
    now_ms = 1_700_000_000_000
    o = recovery.restore(str(path), str(tmp_path / "d"), 5, margin=1000, now_ms=now_ms)
    assert o.cluster_id != "c-sample" and o.removed_zeros == (1,)  # zero 2 was removed before
    assert o.max_uid == now_ms * 1000 and o.max_txn_ts == now_ms * 1000  # the wall-clock floor wins here
    rec = recovery.load_data_dir(str(tmp_path / "d"))
    s = rec.state._state
    assert not s.zeros and {m.id for m in s.removed if not m.group_id} == {1, 2}
    assert {t for g in s.groups.values() for t in g.tablets} == {"p1", "p2", "p3"}
    assert rec.index == 41 and s.version == 41
    # A margin above the floor wins; a removed id is refused; a used data dir is refused.
    o = recovery.restore(str(path), str(tmp_path / "e"), 1, margin=10**17, now_ms=now_ms)
    assert o.max_uid == 5000 + 10**17 and o.max_txn_ts == 300 + 10**17 and o.removed_zeros == ()
    with pytest.raises(recovery.RecoveryError, match="removed"):
        recovery.restore(str(path), str(tmp_path / "f"), 2)
    code, _, err = _restore(["--from", str(path), "--data-dir", str(tmp_path / "d"), "--raft-id", "3"])
    assert code == 1 and "already holds" in err
    path.write_bytes(path.read_bytes()[:-3])
    code, _, err = _restore(["--from", str(path), "--data-dir", str(tmp_path / "g"), "--raft-id", "3"])
    assert code == 1 and "truncated" in err and not (tmp_path / "g").exists()


# -- versions ---------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_cluster_version_is_the_minimum_announced_and_gates_proposals(tmp_path, monkeypatch) -> None:
    s = ZeroState()
    s.apply(1, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=1, addr="a:1", version=2)))
    assert s.cluster_version == 2
    s.apply(2, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=2, addr="b:1")))  # not announced: 1
    assert s.cluster_version == 1
    s.apply(3, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=2, addr="b:1", version=3)))
    assert s.cluster_version == 2 and s.zero_version(2) == 3
    s.apply(4, state_pb2.Proposal(remove_zero=state_pb2.RemoveZero(raft_id=1)))
    assert s.cluster_version == 3 and ZeroState.restore(s.snapshot()).cluster_version == 3

    # A kind newer than the cluster version is refused by propose (FAILED_PRECONDITION).
    newer = versions.ZERO_VERSION + 1
    monkeypatch.setitem(versions.PROPOSAL_MIN_VERSION, "set_rebalance", newer)
    p = state_pb2.Proposal(set_rebalance=state_pb2.SetRebalanceEnabled(enabled=False))
    with pytest.raises(FailedPreconditionError,
                       match=f"needs cluster version {newer}, but the cluster runs {newer - 1}"):
        versions.check_proposal(p, newer - 1)
    versions.check_proposal(p, newer)

    async def main() -> None:
        app = await _app(tmp_path / "z")
        try:
            node = app.node
            await until(lambda: node.state.cluster_version == versions.ZERO_VERSION, 20, message="announced")
            assert node.state.zero_version(1) == versions.ZERO_VERSION
            with pytest.raises(FailedPreconditionError, match=f"needs cluster version {newer}"):
                await node.propose(p)
            # A joiner older than the cluster version is refused.
            node.state._state.cluster_version = newer  # as if every zero had announced it
            async with grpc.aio.insecure_channel(_addr(app)) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await tgrpc.RaftStub(ch).JoinCluster(tpb.JoinClusterRequest(
                        addr="127.0.0.1:1", protocol=tpb.RAFT_PROTOCOL_V1, version=newer - 1))
                assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert f"runs version {newer}" in ei.value.details()
        finally:
            await app.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_newer_on_disk_formats_are_refused(tmp_path) -> None:
    import zlib
    d = tmp_path / "z"
    d.mkdir()
    body = {"format": 2, "raft_id": 1}
    canon = json.dumps(body, sort_keys=True).encode()
    (d / IDENTITY_FILE).write_text(json.dumps({"body": body, "crc32": zlib.crc32(canon)}))

    async def start(dd) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(StartupError) as ei:
            await _app(dd)
        return str(ei.value)

    assert "identity format 2 is not supported (this zero reads 1)" in asyncio.run(start(d))
    # A data dir whose cluster already runs a newer version than this zero.
    s = ZeroState()
    s.apply(1, state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id="c1")))
    s.apply(2, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=1, addr="127.0.0.1:1",
                                                              version=versions.ZERO_VERSION + 1)))
    d2 = tmp_path / "z2"
    d2.mkdir()
    recovery.write_data_dir(str(d2), raft_id=1, state=s, index=2, term=1)
    save_identity(str(d2), Identity(1))
    v = versions.ZERO_VERSION
    assert f"runs version {v + 1}, newer than this zero ({v})" in asyncio.run(start(d2))


# -- backup under load, restore into a fresh cluster ----------------------------------------------
@pytest.mark.timeout(90)
def test_backup_under_load_then_restore_into_a_fresh_cluster(tmp_path) -> None:
    async def main() -> None:
        apps = await _cluster(tmp_path / "old")
        load = Load([_addr(a) for a in apps])
        load.start()
        try:
            await until(lambda: len(load.tablets) >= 20 and len(load.uids) >= 10, 20, message="load")
            acked_tablets = dict(load.tablets)
            acked_members = list(load.members)
            acked_uid = max(e for _, e in load.uids)
            acked_ts = max(load.ts)
            follower = next(a for a in apps if not a.node.is_leader)
            out = tmp_path / "backup.zbk"
            code, text, err = await asyncio.to_thread(_admin, ["backup", "--addr", _addr(follower), "--out", str(out)])
            assert code == 0, err
            assert "backup written" in text
            await asyncio.sleep(0.3)  # the old cluster keeps serving after the backup
        finally:
            await load.stop()
        assert not load.errors, load.errors[:3]
        old_max = load.max_id()
        b = backup.read(str(out))
        st = b.state
        assert b.header.cluster_id == apps[0].node.state.cluster_id
        for name, gid in acked_tablets.items():  # everything acknowledged before the backup
            assert st.group_of(name) == gid
        assert all(st.member(m) is not None for m in acked_members)
        assert b.header.max_uid >= acked_uid and b.header.max_txn_ts >= acked_ts
        old_cluster = b.header.cluster_id
        old_tablets = {t: gid for gid, g in st._state.groups.items() for t in g.tablets}
        old_members = set(st.member_ids())
        await _stop(apps)

        # Restore: a new single-zero cluster, then two new zeros join it.
        code, text, err = _restore(["--from", str(out), "--data-dir", str(tmp_path / "new1"), "--raft-id", "1"])
        assert code == 0, err
        assert "leases continue above" in text
        n1 = await _app(tmp_path / "new1")
        news = [n1]
        try:
            await until(lambda: n1.node.is_leader and 1 in n1.node.state._state.zeros, 20, message="restored leader")
            news += [await _app(tmp_path / f"new{i}", peer=_addr(n1)) for i in (2, 3)]
            await until(lambda: len(n1.node.raft_status().voters) == 3 and not n1.node.raft_status().learners, 20,
                        message="3 voters")
            async with ZeroClient([_addr(a) for a in news]) as c:
                s = await c.get_state()
                assert s.cluster_id and s.cluster_id != old_cluster
                assert {t: g.tablets[t].group_id for g in s.groups.values() for t in g.tablets} == old_tablets
                assert {m for g in s.groups.values() for m in g.members} == old_members
                assert sorted(s.zeros) == [1, 4, 5]  # old ids 2, 3 are removed; new ones are never reused
                assert {m.id for m in s.removed if not m.group_id} >= {2, 3}
                assert s.max_uid >= b.header.max_uid + recovery.LEASE_MARGIN
                uid = await c.assign_ids(zero_pb2.UID, 1)
                ts = await c.timestamps(1)
                assert uid[0] > old_max and ts[0] > old_max  # leases never repeat
                assert uid[0] > b.header.max_uid + recovery.LEASE_MARGIN
        finally:
            await _stop(news)

    asyncio.run(main())


# -- force-new-cluster ------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_force_new_cluster_from_the_survivor_of_a_lost_majority(tmp_path) -> None:
    async def main() -> None:
        ports = free_ports(3)
        first = await _app(tmp_path / "z1", ports[0])
        await until(lambda: first.node.is_leader and 1 in first.node.state._state.zeros, 20, message="bootstrap")
        apps = [first] + [await _app(tmp_path / f"z{i + 1}", ports[i], peer=_addr(first)) for i in (1, 2)]
        await until(lambda: len(first.node.raft_status().voters) == 3 and not first.node.raft_status().learners, 20,
                    message="3 voters")
        load = Load([_addr(a) for a in apps])
        load.start()
        await until(lambda: len(load.tablets) >= 10 and len(load.ts) >= 10, 20, message="load")
        await load.stop()
        assert not load.errors
        old_max = load.max_id()
        old_cluster = first.node.state.cluster_id
        await _stop(apps)
        # The majority is lost for good: zeros 2 and 3's data dirs are gone. A copy of
        # zero 2's is kept to bring it back later, as if it had only been cut off.
        shutil.copytree(tmp_path / "z2", tmp_path / "z2-stale")
        shutil.rmtree(tmp_path / "z2")
        shutil.rmtree(tmp_path / "z3")

        survivor = await _app(tmp_path / "z1", ports[0], force_new_cluster=True)
        news = [survivor]
        try:
            node = survivor.node
            await until(lambda: node.is_leader, 20, message="the survivor leads alone")
            assert node.state.cluster_id != old_cluster
            assert sorted(node.raft_status().voters) == [1]
            assert node.state.is_removed(2, zero=True) and node.state.is_removed(3, zero=True)
            assert any(n.startswith("wal.old-") for n in os.listdir(tmp_path / "z1"))
            assert "FORCED A NEW CLUSTER" in survivor._log_stream.getvalue()  # type: ignore[union-attr]
            for name, gid in load.tablets.items():
                assert node.state.group_of(name) == gid
            assert all(node.state.member(m) is not None for m in load.members)
            # Two new zeros join; the state is intact and leases never repeat.
            news += [await _app(tmp_path / f"n{i}", peer=_addr(survivor)) for i in (1, 2)]
            await until(lambda: len(node.raft_status().voters) == 3 and not node.raft_status().learners, 20,
                        message="3 voters again")
            async with ZeroClient([_addr(a) for a in news]) as c:
                s = await c.get_state()
                assert sum(len(g.tablets) for g in s.groups.values()) >= len(load.tablets)
                assert (await c.assign_ids(zero_pb2.UID, 1))[0] > old_max
                assert (await c.timestamps(1))[0] > old_max
            # An old member coming back is refused: another cluster id (and a removed id).
            stale = await _app(tmp_path / "z2-stale", ports[1])
            news.append(stale)
            await asyncio.sleep(1.0)
            assert not stale.node.is_leader and stale.node.leader_id != node.raft_id
            refused = stale.node.metrics.peer_refusals.labels("1", "CLUSTER_MISMATCH")._value.get()
            assert refused > 0
            assert sorted(node.raft_status().voters) == sorted(z for z in node.state._state.zeros)
            assert 2 not in node.state._state.zeros
            async with grpc.aio.insecure_channel(_addr(survivor)) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await tgrpc.RaftStub(ch).JoinCluster(tpb.JoinClusterRequest(
                        raft_id=2, addr="127.0.0.1:1", protocol=tpb.RAFT_PROTOCOL_V1, version=versions.ZERO_VERSION))
                assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "removed" in ei.value.details()
        finally:
            await _stop(news)
        # The flag left on does not force again.
        again = await _app(tmp_path / "z1", ports[0], force_new_cluster=True)
        try:
            assert again.node.state.cluster_id == node.state.cluster_id
            assert "not forcing again" in again._log_stream.getvalue()  # type: ignore[union-attr]
        finally:
            await again.stop()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_force_new_cluster_needs_a_used_data_dir_and_refuses_peer(tmp_path) -> None:
    async def main() -> None:
        with pytest.raises(StartupError, match="no IDENTITY"):
            await _app(tmp_path / "empty", force_new_cluster=True)

    asyncio.run(main())
    p = cli.build_parser()
    with pytest.raises(cli.UsageError, match="drop --peer"):
        cli.config_from_args(p.parse_args(["run", "--force-new-cluster", "--peer", "z:5080"]), {})
    cfg = cli.config_from_args(p.parse_args(["run", "--force-new-cluster", "--lease-margin", "5"]), {})
    assert cfg.force_new_cluster and cfg.lease_margin == 5
    assert cli.config_from_args(p.parse_args(["run"]), {"ZERO_FORCE_NEW_CLUSTER": "true"}).force_new_cluster


# -- the committed fixtures of released formats ----------------------------------------------------
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "data", "v1")


@pytest.mark.timeout(30)
def test_released_format_fixtures_still_open(tmp_path) -> None:
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        want = json.load(f)
    b = backup.verify(os.path.join(FIXTURES, "backup.zbk"))
    assert b.header.cluster_id == want["cluster_id"]
    assert sorted(t for g in b.state._state.groups.values() for t in g.tablets) == want["tablets"]
    dd = tmp_path / "datadir"
    shutil.copytree(os.path.join(FIXTURES, "datadir"), dd)

    async def main() -> None:
        node = bare_node(NodeOptions(data_dir=str(dd), my_addr="127.0.0.1:1", tick_seconds=TICK,
                                     election_ticks=ELECTION), logger=_logger("fixture"))
        await node.start()
        try:
            await until(lambda: node.is_leader and node.applied >= want["applied"], 20, message="fixture replayed")
            st = node.state._state
            assert st.cluster_id == want["cluster_id"]
            assert sorted(t for g in st.groups.values() for t in g.tablets) == want["tablets"]
            assert st.max_uid == want["max_uid"] and st.max_txn_ts == want["max_txn_ts"]
        finally:
            await node.stop()

    asyncio.run(main())
