"""A snapshot file newer than the snapshot the WAL names: the orphan of a crash between
writing the file and its WAL record (deleted, the storage opens), or proof that the WAL
lost records it had synced (refused, naming the WAL segment). Also: format version 1
files (the first release) are still read, with their orphans deleted as before.
docs/DESIGN.md ("Durable storage"), recovery."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from raftcore import MemoryStorage
from raftcore.errors import CorruptionError
from raftcore.raftpb import ConfState, Entry, HardState, Snapshot
from raftcore.wal import DiskStorage
from raftcore.wal import storage as storage_mod
from raftcore.wal.record import SNAPSHOT_MAGIC, RecordType, crc32c, encode_file_header, scan_records
from raftcore.wal.snapfile import encode_snapshot_body, read_snapshot, snapshot_name
from raftcore.wal.walpb import SaveRecord, SnapshotFile

from wal_testutil import CreateSnapshot, ListLogger, Op, Save, apply, state


def ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(index=i, term=term, data=b"%d" % i * 8) for i in range(lo, hi)]


def seg(d: Path) -> Path:
    return sorted(d.glob("*.wal"))[-1]


def records(d: Path) -> list[tuple[int, int, bytes]]:
    recs, damage = scan_records(seg(d).read_bytes(), 32)
    assert damage is None
    return recs


def installed(index: int, term: int) -> Snapshot:
    s = Snapshot(data=b"from the leader %d" % index)
    s.metadata.index, s.metadata.term = index, term
    s.metadata.conf_state.voters.extend([1, 2, 3])
    return s


def cut(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def run(d: Path, ops: list[Op]) -> MemoryStorage:
    """Apply ops to a DiskStorage in d and to a model; returns the model."""
    m = MemoryStorage()
    with DiskStorage.open(d) as st:
        for op in ops:
            apply(st, op)
            apply(m, op)
    return m


BEFORE: list[Op] = [Save(HardState(term=1, commit=i), ents(i, i + 1, 1)) for i in range(1, 21)]
LOCAL: list[Op] = [*BEFORE, CreateSnapshot(15, ConfState(voters=[1]), b"state at 15"),
                   *[Save(HardState(term=1, commit=i), ents(i, i + 1, 1)) for i in range(21, 26)]]
INSTALL: list[Op] = [*BEFORE, Save(HardState(term=2, commit=40), [], installed(40, 2)),
                     *[Save(HardState(term=2, commit=i), ents(i, i + 1, 2)) for i in range(41, 46)]]


# -- a WAL cut below its snapshot is refused ------------------------------------------------


def snapshot_record(recs: list[tuple[int, int, bytes]]) -> int:
    """The offset of the record that names a new snapshot."""
    for off, rtype, payload in recs:
        if rtype == RecordType.CREATE_SNAPSHOT or (
            rtype == RecordType.SAVE and SaveRecord.FromString(payload).HasField("snapshot")
        ):
            return off
    raise AssertionError("no snapshot record")


@pytest.mark.parametrize("ops,snap_index", [(LOCAL, 15), (INSTALL, 40)], ids=["local", "installed"])
@pytest.mark.parametrize("where", ["mid-record", "record-boundary", "checkpoint-only"])
def test_wal_cut_below_its_snapshot_is_refused_naming_the_segment(
    tmp_path: Path, ops: list[Op], snap_index: int, where: str
) -> None:
    """The snapshot's record, and records after it, were synced: a WAL that ends before
    the record is not a torn tail (a crash only tears what follows the last sync)."""
    d = tmp_path / "w"
    run(d, ops)
    recs = records(d)
    at = {"mid-record": snapshot_record(recs) - 7, "record-boundary": recs[len(BEFORE) - 3][0],
          "checkpoint-only": recs[1][0]}[where]
    cut(seg(d), at)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.name != "LOCK"}
    with pytest.raises(CorruptionError) as ei:
        DiskStorage.open(d)
    msg = str(ei.value)
    assert msg.startswith(f"{seg(d)}: offset ") and snapshot_name(snap_index) in msg, msg
    assert "synced records are lost" in msg
    # Nothing was repaired or deleted on the way to the refusal.
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.name != "LOCK"} == before


def test_whole_newest_segment_lost_below_a_snapshot_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "w"
    m = MemoryStorage()
    with DiskStorage.open(d, segment_size=300) as st:
        for op in LOCAL:
            apply(st, op)
            apply(m, op)
    segs = sorted(d.glob("*.wal"))
    pos = read_snapshot(str(d / snapshot_name(15)), 15).wal_pos
    assert pos is not None and len(segs) > 2
    for s in segs:  # drop every segment from the one the snapshot's record is in
        if int(s.stem, 16) >= pos[0]:
            s.unlink()
    with pytest.raises(CorruptionError, match="synced records are lost"):
        DiskStorage.open(d, segment_size=300)


def test_orphan_whose_record_position_the_log_passed_is_refused(tmp_path: Path) -> None:
    """A file whose record should start at an offset the log continues past, yet the
    log never names it: not a crash state either."""
    d = tmp_path / "w"
    run(d, BEFORE)
    mid = records(d)[5][0]
    _write_snapshot_file(d, installed(30, 1), version=2, wal_pos=(0, mid))
    with pytest.raises(CorruptionError, match=f"{seg(d)}.*continues past.*never names"):
        DiskStorage.open(d)


# -- an orphan a crash explains is deleted ---------------------------------------------------


@pytest.mark.parametrize("ops,snap_index", [(LOCAL, 15), (INSTALL, 40)], ids=["local", "installed"])
def test_crash_between_snapshot_file_and_its_record_discards_the_file(
    tmp_path: Path, ops: list[Op], snap_index: int
) -> None:
    """Crash states of the snapshot operation: its file written, its record absent,
    partly written, or complete but damaged (a torn write). The storage opens at the
    state before the operation, the file is deleted, and the deletion is reported."""
    n = ops.index(next(op for op in ops if isinstance(op, CreateSnapshot) or
                       (isinstance(op, Save) and op.snapshot is not None)))
    before, after = tmp_path / "before", tmp_path / "after"
    prev = state(run(before, ops[:n]))
    run(after, ops[: n + 1])
    start = seg(before).stat().st_size
    full = seg(after).read_bytes()
    name = snapshot_name(snap_index)
    for keep in (start, start + 1, start + 15, start + 16, len(full) - 1):
        crash = tmp_path / f"crash{keep}"
        shutil.copytree(before, crash)
        shutil.copy(after / name, crash / name)
        seg(crash).write_bytes(full[:keep])
        log = ListLogger()
        with DiskStorage.open(crash, logger=log) as st:
            assert state(st) == prev, keep
            st.save(HardState(term=3, commit=1), ents(st.last_index() + 1, st.last_index() + 3, 3))
        assert not (crash / name).exists()
        assert any(str(crash / name) in w and "deleted" in w for w in log.warnings), log.warnings
        with DiskStorage.open(crash) as st:  # and it keeps working
            assert st.snapshot().metadata.index < snap_index


def test_torn_tail_after_the_snapshot_record_is_still_repaired(tmp_path: Path) -> None:
    d = tmp_path / "w"
    m = run(d, LOCAL[:-1])
    with DiskStorage.open(d) as st:
        apply(st, LOCAL[-1])
    last = records(d)[-1][0]
    cut(seg(d), last + 20)
    log = ListLogger()
    with DiskStorage.open(d, logger=log) as st:
        assert state(st) == state(m)
        assert st.snapshot().data == b"state at 15"
    assert len(log.warnings) == 1 and f"offset {last}" in log.warnings[0]
    assert (d / snapshot_name(15)).exists()


def test_unsynced_saves_are_synced_before_a_snapshot_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The position a snapshot file records is durable before the file exists: a power
    loss may drop unsynced saves, which must not make a later snapshot look like proof
    of lost synced records."""
    events: list[str] = []
    real_sync, real_write = os.fdatasync, storage_mod.write_snapshot

    def sync(fd: int) -> None:
        events.append("fdatasync")
        real_sync(fd)

    def write(dirpath: str, snap: Snapshot, wal_pos: tuple[int, int]) -> str:
        events.append("snapshot file")
        return real_write(dirpath, snap, wal_pos)

    with DiskStorage.open(tmp_path / "w") as st:
        monkeypatch.setattr(os, "fdatasync", sync)
        monkeypatch.setattr(storage_mod, "write_snapshot", write)
        st.save(HardState(term=1, commit=5), ents(1, 10, 1), must_sync=False)
        st.create_snapshot(5, None, b"x")
        assert events == ["fdatasync", "snapshot file", "fdatasync"]
        events.clear()
        st.save(HardState(term=1, commit=6), ents(10, 12, 1), must_sync=False)
        st.save(HardState(term=2, commit=50), [], installed(50, 2), must_sync=True)
        assert events == ["fdatasync", "snapshot file", "fdatasync"]
        events.clear()
        st.save(None, ents(51, 53, 2))
        events.clear()
        st.create_snapshot(52, None, b"y")  # nothing unsynced: no extra fdatasync
        assert events == ["snapshot file", "fdatasync"]


# -- format version 1 ------------------------------------------------------------------------


def _write_snapshot_file(d: Path, snap: Snapshot, *, version: int, wal_pos: tuple[int, int] = (0, 0)) -> Path:
    body = snap.SerializeToString() if version == 1 else encode_snapshot_body(snap, wal_pos)
    head = bytearray(encode_file_header(SNAPSHOT_MAGIC, len(body), crc32c(body)))
    _set_version(head, version)
    path = d / snapshot_name(snap.metadata.index)
    path.write_bytes(bytes(head) + body)
    return path


def _set_version(head: bytearray, version: int) -> None:
    struct.pack_into("<H", head, 8, version)
    struct.pack_into("<I", head, 28, crc32c(bytes(head[:28])))


def _to_version_1(d: Path) -> None:
    """Rewrite every file of d as the first release wrote it."""
    for p in d.glob("*.wal"):
        b = bytearray(p.read_bytes())
        _set_version(b, 1)
        p.write_bytes(bytes(b))
    for p in d.glob("*.snap"):
        i = int(p.stem, 16)
        snap = read_snapshot(str(p), i).snapshot
        _write_snapshot_file(d, snap, version=1)


def test_version_1_files_are_read(tmp_path: Path) -> None:
    d = tmp_path / "w"
    m = run(d, LOCAL)
    _to_version_1(d)
    with DiskStorage.open(d) as st:
        assert state(st) == state(m)
        st.create_snapshot(24, None, b"new")  # a version-2 file beside version-1 segments
        st.save(None, ents(26, 28, 1))
    with DiskStorage.open(d) as st:
        assert st.snapshot().data == b"new" and st.last_index() == 27
    body = (d / snapshot_name(24)).read_bytes()[32:]
    assert SnapshotFile.FromString(body).snapshot.data == b"new"


def test_version_1_orphan_is_deleted_as_before(tmp_path: Path) -> None:
    """The first release did not record where a snapshot's record starts: its orphans
    cannot be told apart from a WAL that lost records, and are deleted as they were."""
    d = tmp_path / "w"
    m = run(d, BEFORE)
    _to_version_1(d)
    path = _write_snapshot_file(d, installed(40, 2), version=1)
    with DiskStorage.open(d) as st:
        assert state(st) == state(m)
    assert not path.exists()


@pytest.mark.parametrize("size", [0, 1, 127, 128, 70_000])
@pytest.mark.parametrize("pos", [(0, 0), (0, 52), (3, 1 << 26), (2**40, 2**33)])
def test_hand_encoded_snapshot_file_body_is_protobuf(size: int, pos: tuple[int, int]) -> None:
    snap = installed(9, 2)
    snap.data = os.urandom(size)
    body = encode_snapshot_body(snap, pos)
    assert body == SnapshotFile(snapshot=snap, wal_segment=pos[0], wal_offset=pos[1]).SerializeToString()
    sf = SnapshotFile.FromString(body)
    assert isinstance(sf.snapshot, Snapshot) and sf.snapshot == snap
    assert (sf.wal_segment, sf.wal_offset) == pos
