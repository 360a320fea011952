"""Unit tests of raftcore.wal.DiskStorage: the Storage API against MemoryStorage, the
write side, locking, poisoning, format versions, corruption and torn-tail repair."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raftcore import MemoryStorage
from raftcore.errors import (
    CompactedError,
    CorruptionError,
    SnapshotOutOfDateError,
    StorageError,
    UnavailableError,
)
from raftcore.raftpb import ConfState, Entry, HardState, Snapshot
from raftcore.wal import DiskStorage, FORMAT_VERSION
from raftcore.wal.record import RecordType, crc32c, scan_records

from wal_testutil import Compact, CreateSnapshot, ListLogger, Save, apply, state


def ents(lo: int, hi: int, term: int, size: int = 8) -> list[Entry]:
    return [Entry(index=i, term=term, data=bytes([i % 256]) * size) for i in range(lo, hi)]


def segs(d: Path) -> list[Path]:
    return sorted(d.glob("*.wal"))


def both(d: Path, **kw: Any) -> tuple[DiskStorage, MemoryStorage]:
    return DiskStorage.open(d, **kw), MemoryStorage()


def outcome(f: Any, *a: Any) -> Any:
    try:
        return ("ok", f(*a))
    except Exception as e:  # noqa: BLE001 - comparing error types
        return ("err", type(e))


# -- Storage API parity with MemoryStorage ------------------------------------------


def test_empty_storage_matches_memory_storage(tmp_path: Path) -> None:
    d, m = both(tmp_path / "w")
    with d:
        assert state(d) == state(m)
        for lo, hi in [(0, 1), (1, 1), (1, 2)]:
            assert outcome(d.entries, lo, hi) == outcome(m.entries, lo, hi)
        for i in (0, 1, 5):
            assert outcome(d.term, i) == outcome(m.term, i)
        assert d.snapshot() == m.snapshot()


def test_reads_and_errors_match_memory_storage(tmp_path: Path) -> None:
    d, m = both(tmp_path / "w")
    ops = [
        Save(HardState(term=1, vote=1, commit=2), ents(1, 11, 1)),
        Save(HardState(term=2, vote=2, commit=5), ents(6, 9, 2)),  # truncates 6..10
        CreateSnapshot(4, ConfState(voters=[1, 2]), b"state@4"),
        Compact(3),
        Save(None, ents(9, 12, 2)),
    ]
    with d:
        for op in ops:
            apply(d, op)
            apply(m, op)
            assert state(d) == state(m)
        for lo in range(0, 14):
            for hi in range(lo, 14):
                for max_size in (0, 20, 1 << 20):
                    assert outcome(d.entries, lo, hi, max_size) == outcome(m.entries, lo, hi, max_size)
        for i in range(0, 14):
            assert outcome(d.term, i) == outcome(m.term, i)
        for i in (0, 4, 99):  # older than the snapshot, or beyond the log
            assert outcome(d.create_snapshot, i, None, b"") == outcome(m.create_snapshot, i, None, b"")
        assert outcome(d.compact, 2) == outcome(m.compact, 2) == ("err", CompactedError)
        assert outcome(d.compact, 99) == outcome(m.compact, 99) == ("err", UnavailableError)
    with DiskStorage.open(tmp_path / "w") as d2:
        assert state(d2) == state(m)


def test_save_validation_errors_change_nothing(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(HardState(term=1), ents(1, 4, 1))
        before = state(d)
        size = os.path.getsize(segs(w)[-1])
        with pytest.raises(UnavailableError):
            d.save(HardState(term=9), ents(6, 8, 1))  # gap after 3
        with pytest.raises(StorageError, match="contiguous"):
            d.save(None, [Entry(index=4, term=1), Entry(index=6, term=1)])
        assert state(d) == before and os.path.getsize(segs(w)[-1]) == size
        snap = Snapshot()
        snap.metadata.index, snap.metadata.term = 2, 1
        d.save(None, [], snap)
        after = state(d)
        with pytest.raises(SnapshotOutOfDateError):
            d.save(None, [], snap)
        assert state(d) == after
    with DiskStorage.open(w) as d:
        assert state(d) == after


def test_entries_below_compaction_are_ignored_like_memory_storage(tmp_path: Path) -> None:
    d, m = both(tmp_path / "w")
    with d:
        for op in [Save(None, ents(1, 10, 1)), CreateSnapshot(6, ConfState(), b""), Compact(6),
                   Save(None, ents(2, 5, 1)), Save(None, ents(4, 12, 1))]:
            apply(d, op)
            apply(m, op)
            assert state(d) == state(m)


def test_save_with_snapshot_persists_file_and_resets_log(tmp_path: Path) -> None:
    w = tmp_path / "w"
    d, m = both(w)
    snap = Snapshot(data=b"installed")
    snap.metadata.index, snap.metadata.term = 50, 3
    snap.metadata.conf_state.voters.extend([1, 2, 3])
    with d:
        for op in [Save(HardState(term=1), ents(1, 5, 1)), Save(HardState(term=3, commit=50), ents(51, 53, 3), snap)]:
            apply(d, op)
            apply(m, op)
        assert state(d) == state(m)
        assert d.first_index() == 51 and d.term(50) == 3
    assert sorted(p.name for p in w.glob("*.snap")) == [f"{50:016x}.snap"]
    with DiskStorage.open(w) as d2:
        assert state(d2) == state(m)
        assert d2.snapshot().data == b"installed"
        assert d2.initial_state()[1].voters == [1, 2, 3]


def test_create_snapshot_replaces_older_snapshot_files(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 20, 1))
        s1 = d.create_snapshot(5, ConfState(voters=[1]), b"five")
        assert s1.metadata.index == 5 and s1.metadata.term == 1
        d.create_snapshot(9, None, b"nine")
        with pytest.raises(SnapshotOutOfDateError):
            d.create_snapshot(9, None, b"again")
        with pytest.raises(UnavailableError):
            d.create_snapshot(25, None, b"")
        d.compact(9)
        with pytest.raises(CompactedError):
            d.compact(8)
    assert [p.name for p in w.glob("*.snap")] == [f"{9:016x}.snap"]
    with DiskStorage.open(w) as d:
        assert d.snapshot().data == b"nine" and d.first_index() == 10


# -- segments -----------------------------------------------------------------------


def test_segments_roll_over_and_compaction_deletes_only_unneeded_ones(tmp_path: Path) -> None:
    w = tmp_path / "w"
    d, m = both(w, segment_size=600)
    with d:
        for k in range(20):
            op = Save(HardState(term=1, commit=k * 5), ents(k * 5 + 1, k * 5 + 6, 1, 20))
            apply(d, op)
            apply(m, op)
        n = len(segs(w))
        assert n >= 5
        # Compaction without a snapshot keeps every segment (the snapshot rule).
        apply(d, Compact(30))
        apply(m, Compact(30))
        assert len(segs(w)) == n
        apply(d, CreateSnapshot(60, ConfState(voters=[1]), b"s"))
        apply(m, CreateSnapshot(60, ConfState(voters=[1]), b"s"))
        assert len(segs(w)) < n
        first_kept = segs(w)[0]
        assert first_kept.name != f"{0:016x}.wal"
        assert state(d) == state(m)
    with DiskStorage.open(w, segment_size=600) as d2:
        assert state(d2) == state(m)


def test_segment_holding_rewritten_entries_is_kept(tmp_path: Path) -> None:
    """A later segment that truncated back into an older one's range still needs the
    older one for the entries before the truncation point."""
    w = tmp_path / "w"
    d, m = both(w, segment_size=400)
    with d:
        ops = [Save(None, ents(1, 30, 1, 20)), Save(None, ents(10, 12, 2, 20)),
               CreateSnapshot(5, ConfState(), b""), Compact(5)]
        for op in ops:
            apply(d, op)
            apply(m, op)
        assert state(d) == state(m)
    with DiskStorage.open(w, segment_size=400) as d2:
        assert state(d2) == state(m)


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 3, 1))
    (w / f"{1:016x}.wal.tmp").write_bytes(b"partial")
    (w / f"{7:016x}.snap.tmp").write_bytes(b"partial")
    with DiskStorage.open(w) as d:
        assert d.last_index() == 2
    assert not list(w.glob("*.tmp"))


# -- locking, closing -----------------------------------------------------------------


def test_second_open_in_same_process_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "w"
    d = DiskStorage.open(w)
    with pytest.raises(StorageError, match=str(w)):
        DiskStorage.open(w)
    d.close()
    d.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        d.last_index()
    with pytest.raises(StorageError, match="closed"):
        d.save(None, ents(1, 2, 1))
    DiskStorage.open(w).close()


@pytest.mark.timeout(30)
def test_open_in_another_process_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "w"
    code = (
        "import sys\nfrom raftcore.wal import DiskStorage\nfrom raftcore.errors import StorageError\n"
        "try:\n DiskStorage.open(sys.argv[1])\nexcept StorageError as e:\n print('refused', e); sys.exit(3)\n"
    )
    with DiskStorage.open(w):
        r = subprocess.run([sys.executable, "-c", code, str(w)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 3 and str(w) in r.stdout
    r = subprocess.run([sys.executable, "-c", code, str(w)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def test_bad_segment_size() -> None:
    with pytest.raises(ValueError):
        DiskStorage.open("/nonexistent-never-created", segment_size=0)


# -- syncing, batching, poisoning --------------------------------------------------------


def test_one_write_and_one_fdatasync_per_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"sync": 0, "write": 0}
    real_sync, real_writev, real_write = os.fdatasync, os.writev, os.write

    def sync(fd: int) -> None:
        calls["sync"] += 1
        real_sync(fd)

    def writev(fd: int, bufs: Any) -> int:
        calls["write"] += 1
        return real_writev(fd, bufs)

    def write(fd: int, b: Any) -> int:
        calls["write"] += 1
        return real_write(fd, b)

    with DiskStorage.open(tmp_path / "w") as d:
        monkeypatch.setattr(os, "fdatasync", sync)
        monkeypatch.setattr(os, "writev", writev)
        monkeypatch.setattr(os, "write", write)
        d.save(HardState(term=1, commit=1), ents(1, 257, 1, 64))
        assert calls == {"sync": 1, "write": 1}
        d.save(HardState(term=1, commit=2), ents(257, 300, 1), must_sync=False)
        assert calls == {"sync": 1, "write": 2}
        d.sync()
        assert calls["sync"] == 2
        d.save(None, [])  # nothing to persist: no I/O
        assert calls == {"sync": 2, "write": 2}


def test_failed_fdatasync_poisons_and_is_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def failing(fd: int) -> None:
        nonlocal calls
        calls += 1
        raise OSError(5, "Input/output error")

    d = DiskStorage.open(tmp_path / "w")
    d.save(None, ents(1, 3, 1))
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(StorageError, match="fdatasync"):
        d.save(HardState(term=1), ents(3, 5, 1))
    for call in (lambda: d.save(None, ents(5, 6, 1)), d.last_index, lambda: d.entries(1, 2),
                 lambda: d.compact(1), lambda: d.create_snapshot(1, None, b""), d.sync):
        with pytest.raises(StorageError, match="failed earlier"):
            call()
    d.close()  # does not sync again
    assert calls == 1
    monkeypatch.undo()
    with DiskStorage.open(tmp_path / "w") as d2:  # the restart reads what the disk has
        assert d2.last_index() in (2, 4)


def test_failed_write_poisons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = DiskStorage.open(tmp_path / "w")

    def failing(fd: int, b: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", failing)
    with pytest.raises(StorageError, match="No space"):
        d.save(None, ents(1, 3, 1))
    monkeypatch.undo()
    with pytest.raises(StorageError, match="failed earlier"):
        d.save(None, ents(1, 3, 1))
    d.close()


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def short_writev(fd: int, bufs: Any) -> int:
        return real_write(fd, bufs[0][:5])

    with DiskStorage.open(tmp_path / "w") as d:
        monkeypatch.setattr(os, "writev", short_writev)
        d.save(HardState(term=1), ents(1, 10, 1))
        monkeypatch.undo()
    with DiskStorage.open(tmp_path / "w") as d:
        assert d.last_index() == 9


# -- versions and corruption -------------------------------------------------------------


def _rewrite_version(path: Path, version: int) -> None:
    b = bytearray(path.read_bytes())
    struct.pack_into("<H", b, 8, version)
    struct.pack_into("<I", b, 28, crc32c(bytes(b[:28])))
    path.write_bytes(bytes(b))


def test_newer_segment_version_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 3, 1))
    seg = segs(w)[0]
    _rewrite_version(seg, FORMAT_VERSION + 1)
    with pytest.raises(StorageError, match=f"{seg}.*version {FORMAT_VERSION + 1}") as ei:
        DiskStorage.open(w)
    assert not isinstance(ei.value, CorruptionError)


def test_newer_snapshot_version_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 3, 1))
        d.create_snapshot(2, None, b"x")
    snap = next(w.glob("*.snap"))
    _rewrite_version(snap, 7)
    with pytest.raises(StorageError, match=f"{snap}.*version 7"):
        DiskStorage.open(w)
    # The lock was released despite the failure.
    _rewrite_version(snap, FORMAT_VERSION)
    DiskStorage.open(w).close()


def _three_saves(w: Path, **kw: Any) -> list[tuple[int, int, bytes]]:
    with DiskStorage.open(w, **kw) as d:
        for k in range(3):
            d.save(HardState(term=1, commit=k), ents(k * 4 + 1, k * 4 + 5, 1))
    buf = segs(w)[-1].read_bytes()
    records, damage = scan_records(buf, 32)
    assert damage is None and [r[1] for r in records] == [RecordType.CHECKPOINT] + [RecordType.SAVE] * 3
    return records


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 1 << bit
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("where", ["payload", "length", "crc", "type"])
def test_damage_before_the_tail_is_corruption_naming_file_and_offset(tmp_path: Path, where: str) -> None:
    w = tmp_path / "w"
    records = _three_saves(w)
    off = records[2][0]  # the middle save
    delta = {"payload": 20, "length": 0, "crc": 9, "type": 4}[where]
    seg = segs(w)[-1]
    _flip(seg, off + delta)
    with pytest.raises(CorruptionError, match=f"{seg}: offset {off}"):
        DiskStorage.open(w)


def test_damaged_file_header_is_corruption(tmp_path: Path) -> None:
    w = tmp_path / "w"
    _three_saves(w)
    _flip(segs(w)[-1], 3)
    with pytest.raises(CorruptionError, match="magic"):
        DiskStorage.open(w)
    _flip(segs(w)[-1], 3)
    _flip(segs(w)[-1], 20)
    with pytest.raises(CorruptionError, match="offset"):
        DiskStorage.open(w)


def test_damage_in_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w, segment_size=300) as d:
        for k in range(10):
            d.save(HardState(term=1, commit=k), ents(k * 4 + 1, k * 4 + 5, 1))
    first = segs(w)[0]
    size = first.stat().st_size
    _flip(first, size - 1)  # its last record: in a sealed segment that is no torn tail
    with pytest.raises(CorruptionError, match=f"{first}: offset"):
        DiskStorage.open(w)


def test_missing_segment_is_corruption(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w, segment_size=200) as d:
        for k in range(10):
            d.save(None, ents(k * 4 + 1, k * 4 + 5, 1))
    victim = segs(w)[1]
    victim.unlink()
    with pytest.raises(CorruptionError, match=victim.name):
        DiskStorage.open(w)


def test_damaged_or_missing_snapshot_file_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 10, 1))
        d.create_snapshot(5, ConfState(voters=[1]), b"data" * 10)
    snap = next(w.glob("*.snap"))
    _flip(snap, snap.stat().st_size - 3)
    with pytest.raises(CorruptionError, match=f"{snap}: offset 32"):
        DiskStorage.open(w)
    snap.unlink()
    with pytest.raises(CorruptionError, match="snapshot file missing"):
        DiskStorage.open(w)


def test_damaged_orphan_newer_snapshot_file_is_refused(tmp_path: Path) -> None:
    """A newer snapshot file than the WAL names (a crash between writing it and the
    WAL record) is dropped when intact, refused when damaged: never silently used."""
    w = tmp_path / "w"
    with DiskStorage.open(w) as d:
        d.save(None, ents(1, 10, 1))
    s = Snapshot(data=b"orphan")
    s.metadata.index, s.metadata.term = 8, 1
    from raftcore.wal.snapfile import write_snapshot

    end = (0, segs(w)[-1].stat().st_size)  # its record would have started at the WAL's end
    path = Path(write_snapshot(str(w), s, end))
    with DiskStorage.open(w) as d:
        assert d.snapshot().metadata.index == 0
    assert not path.exists()
    write_snapshot(str(w), s, end)
    _flip(path, 40)
    with pytest.raises(CorruptionError, match=str(path)):
        DiskStorage.open(w)


# -- torn tail repair --------------------------------------------------------------------


def test_torn_tail_is_cut_off_and_reported(tmp_path: Path) -> None:
    w = tmp_path / "w"
    records = _three_saves(w)
    seg = segs(w)[-1]
    last_off = records[-1][0]
    with open(seg, "r+b") as f:
        f.truncate(last_off + 30)
    log = ListLogger()
    with DiskStorage.open(w, logger=log) as d:
        assert d.last_index() == 8 and d.initial_state()[0].commit == 1
        assert len(log.warnings) == 1 and f"offset {last_off}" in log.warnings[0] and str(seg) in log.warnings[0]
        assert d.repaired is not None and f"offset {last_off}" in d.repaired and str(seg) in d.repaired
        d.save(HardState(term=1, commit=9), ents(9, 12, 1))
    assert seg.stat().st_size > last_off
    with DiskStorage.open(w, logger=log) as d:
        assert d.last_index() == 11 and len(log.warnings) == 1
        assert d.repaired is None  # an intact log reports no repair


def test_garbage_and_zeros_after_the_last_record_are_cut_off(tmp_path: Path) -> None:
    w = tmp_path / "w"
    _three_saves(w)
    seg = segs(w)[-1]
    size = seg.stat().st_size
    for junk in (b"\0" * 4096, os.urandom(100)):
        with open(seg, "ab") as f:
            f.write(junk)
        with DiskStorage.open(w) as d:
            assert d.last_index() == 12
        assert seg.stat().st_size == size


@pytest.mark.parametrize("sizes", [[0], [1, 2, 3], [5000, 10, 3000], [127, 128, 2047, 2048, 16384]])
def test_hand_encoded_save_record_is_protobuf(sizes: list[int]) -> None:
    from raftcore.raftpb import SnapshotMetadata
    from raftcore.wal.storage import encode_save
    from raftcore.wal.walpb import SaveRecord

    es = [Entry(index=i + 1, term=2, data=os.urandom(n)) for i, n in enumerate(sizes)]
    hs, sm = HardState(term=3, commit=1), SnapshotMetadata(index=4, term=1)
    assert encode_save(sm, hs, es) == SaveRecord(snapshot=sm, hard_state=hs, entries=es).SerializeToString()
    assert encode_save(None, None, es) == SaveRecord(entries=es).SerializeToString()
    assert encode_save(None, HardState(), []) == SaveRecord(hard_state=HardState()).SerializeToString()
