"""Corruption of a stopped zero's files (issue 11, item 3; SPEC semantics 8): torn tails,
truncations and bit flips in WAL segments and snapshot files under <data-dir>/wal/.
Each damaged copy of one data dir either starts and serves a state that is a prefix of
the one it had (a torn tail repaired: nothing invented, nothing altered), or refuses to
start with exit 1 and a message naming the damaged file. Never anything else."""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest

from procs import FAST, ZeroProc, http_json, write_until_ok
from support import until
from raftcore.wal.record import FILE_HEADER_SIZE, RECORD_HEADER_SIZE, RecordType, scan_records
from raftcore.wal.storage import SAVE_ENTRIES_TAG
from zero.pb import zero_pb2

FLAGS = (*FAST, "--rebalance-interval", "0")


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> tuple[Path, zero_pb2.MembershipState]:
    """A data dir with a snapshot and WAL records after it, cleanly stopped."""
    z = ZeroProc(tmp_path_factory.mktemp("golden") / "z1", "z1", flags=FLAGS)
    try:
        z.start()
        z.wait_healthy(30)
        for i in range(12):
            r = write_until_ok([z.addr], lambda s: s.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=5), 10)
            z.stub.ShouldServe(zero_pb2.Tablet(predicate=f"p{i}", group_id=r.member.group_id), timeout=5)
            z.stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=100), timeout=5)
            z.stub.Timestamps(zero_pb2.TimestampsRequest(count=3), timeout=5)
            if i == 5:
                z.admin.Snapshot(zero_pb2.SnapshotRequest(), timeout=10)
        state = z.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
        assert z.stop() == 0
    finally:
        z.cleanup()
    wal = z.data_dir / "wal"
    assert list(wal.glob("*.wal")) and list(wal.glob("*.snap")), sorted(p.name for p in wal.iterdir())
    return z.data_dir, state


def _last(d: Path, pattern: str) -> Path:
    return sorted((d / "wal").glob(pattern))[-1]


def truncate(path: Path, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(max(0, keep))


def flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


def _cases() -> list[tuple[str, str, str, float]]:
    """(id, file pattern, action, position as a fraction of the file), seeded."""
    rng = random.Random(11)
    cases = [("wal-torn-tail-1", "*.wal", "cut", -1), ("wal-torn-tail-7", "*.wal", "cut", -7),
             ("wal-cut-half", "*.wal", "cut", 0.5), ("wal-cut-header", "*.wal", "cut", 10),
             ("wal-flip-header", "*.wal", "flip", 3), ("snap-cut-half", "*.snap", "cut", 0.5),
             ("snap-cut-header", "*.snap", "cut", 12), ("snap-flip-header", "*.snap", "flip", 5)]
    cases += [(f"wal-flip-{i}", "*.wal", "flip", rng.random()) for i in range(4)]
    cases += [(f"snap-flip-{i}", "*.snap", "flip", rng.random()) for i in range(3)]
    return cases


def _position(size: int, where: float) -> int:
    if where < 0:
        return size + int(where)
    if where < 1:
        return int(size * where)
    return int(where)


def assert_prefix(got: zero_pb2.MembershipState, want: zero_pb2.MembershipState) -> None:
    """`got` holds nothing `want` did not: nothing invented or altered (its version may be
    higher: a restarted zero commits entries of its own, e.g. its leader's first entry;
    its lease ceilings are either at most `want`'s or, after a repair, raised above them
    by the margin — the caller checks the next lease)."""
    assert got.cluster_id == want.cluster_id
    for g, w in ((got.max_uid, want.max_uid), (got.max_txn_ts, want.max_txn_ts)):
        assert g <= w or g >= w + 1_000_000 - 100_000, (g, w)
    for gid, g in got.groups.items():
        for mid, m in g.members.items():
            assert mid in want.groups[gid].members and want.groups[gid].members[mid].addr == m.addr, (gid, mid)
        for name, t in g.tablets.items():
            assert name in want.groups[gid].tablets, (gid, name)
    assert set(got.zeros) <= set(want.zeros)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_corrupted_files_repaired_or_refused(golden, tmp_path, case) -> None:
    _, pattern, action, where = case
    src, want = golden
    d = tmp_path / "z1"
    shutil.copytree(src, d)
    victim = _last(d, pattern)
    size = victim.stat().st_size
    pos = _position(size, where)
    if action == "cut":
        truncate(victim, pos)
    else:
        flip(victim, pos, random.Random(pos).randrange(8))

    z = ZeroProc(d, "z1", flags=FLAGS)
    try:
        z.start()

        def settled() -> str | None:
            if z.proc is not None and z.proc.poll() is not None:
                return "exited"
            return "serving" if http_json(z.http + "/health")[0] == 200 else None
        how = until(settled, 30, message=f"zero on a damaged {victim.name} to serve or exit")
        if how == "exited":
            code = z.proc.returncode  # type: ignore[union-attr]
            log = z.log_tail(3000)
            assert code == 1, f"exit {code} (want 1) after {action} of {victim.name} at {pos}/{size}:\n{log}"
            assert victim.name in log, f"the refusal does not name {victim.name}:\n{log}"
            print(f"corruption {case[0]}: refused (exit 1, names {victim.name})")
            return
        got = z.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
        assert_prefix(got, want)
        # A repaired zero keeps working, and its leases continue above everything handed
        # out before the damage, not just above its repaired state: a cut-off record may
        # have been a synced lease block whose ids were handed out.
        r = write_until_ok([z.addr], lambda s: s.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1),
                                                           timeout=5), 15, "AssignIds")
        t = write_until_ok([z.addr], lambda s: s.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5),
                           15, "Timestamps")
        assert r.start_id > want.max_uid and t.start_id > want.max_txn_ts, (r, t, want.max_uid, want.max_txn_ts)
        assert (z.data_dir / "LEASES_AFTER_REPAIR").exists() is False
        print(f"corruption {case[0]}: started; state a prefix (max_uid {got.max_uid} of {want.max_uid}, "
              f"{sum(len(g.members) for g in got.groups.values())} of "
              f"{sum(len(g.members) for g in want.groups.values())} members)")
    finally:
        if z.proc is not None and z.proc.poll() is None:
            z.signal(signal.SIGKILL)
        z.cleanup()


@pytest.mark.timeout(60)
def test_wal_cut_below_its_snapshot_is_not_a_torn_tail(golden, tmp_path) -> None:
    """A crash can only tear the tail written after the last fsync; a snapshot file at
    index 18 beside a WAL that now ends before 18 proves acknowledged entries were lost.
    The zero refuses: exit 1 naming the WAL, its files left as found (docs/DESIGN.md
    "Recovery rules", 5). Serving would drop what its snapshot holds (dn0..dn5, Connected
    before the snapshot was taken) or, from the snapshot, entries acknowledged after it."""
    src, _ = golden
    d = tmp_path / "z1"
    shutil.copytree(src, d)
    wal, snap = _last(d, "*.wal"), _last(d, "*.snap")
    truncate(wal, int(wal.stat().st_size * 0.3))
    z = ZeroProc(d, "z1", flags=FLAGS)
    try:
        z.start()
        how = until(lambda: "exited" if z.proc.poll() is not None  # type: ignore[union-attr]
                    else ("serving" if http_json(z.http + "/health")[0] == 200 else None), 30, message="serve or exit")
        if how == "exited":
            log = z.log_tail(3000)
            assert z.proc.returncode == 1, log  # type: ignore[union-attr]
            assert wal.name in log and "synced records are lost" in log, log
            assert snap.exists(), "the refusal deleted the snapshot file"
            print(f"corruption wal-cut-below-snapshot: refused (exit 1, names {wal.name})")
            return
        got = z.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
        addrs = {m.addr for g in got.groups.values() for m in g.members.values()}
        missing = sorted({f"dn{i}:7080" for i in range(6)} - addrs)
        pytest.fail(f"served version {got.version} (without {missing or 'nothing'} of its snapshot "
                    f"{snap.name}; snapshot file still there: {snap.exists()}) instead of refusing")
    finally:
        z.cleanup()


@pytest.mark.timeout(60)
def test_a_cut_lease_record_is_never_handed_out_again(tmp_path) -> None:
    """The damage a torn-tail repair cannot tell from a torn write: the log cut inside a
    record that was synced — here a lease block whose ids were handed out. The repaired
    zero may not hand them out again: its leases continue above a margin (as after a
    restore), and until that is committed it hands out nothing."""
    d = tmp_path / "z1"
    z = ZeroProc(d, "z1", flags=FLAGS)
    try:
        z.start()
        z.wait_healthy(30)
        z.stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=10), timeout=5)
        # More than the block holds: a new lease, the last entry the WAL records.
        handed = z.stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=50_000), timeout=5)
        assert z.stop() == 0
    finally:
        z.cleanup()
    wal = _last(d, "*.wal")
    buf = wal.read_bytes()
    records, damage = scan_records(buf, FILE_HEADER_SIZE)
    assert damage is None
    lease = [off for off, rtype, payload in records
             if rtype == RecordType.SAVE and payload[:1] == bytes([SAVE_ENTRIES_TAG])][-1]
    truncate(wal, lease + RECORD_HEADER_SIZE + 2)  # cut inside the lease's SAVE record
    z = ZeroProc(d, "z1", flags=FLAGS)
    try:
        z.start()
        z.wait_healthy(30)
        assert "cut off" in z.log_tail(20_000), "the damaged tail was not repaired"
        r = write_until_ok([z.addr], lambda s: s.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1),
                                                           timeout=5), 15, "AssignIds")
        assert r.start_id > handed.end_id, (
            f"uid {r.start_id} was handed out again after the WAL repair (before the damage: up to {handed.end_id})")
    finally:
        z.cleanup()
