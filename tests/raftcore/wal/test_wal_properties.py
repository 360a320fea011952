"""Property tests of raftcore.wal.DiskStorage (hypothesis, derandomized for CI).

- Random operation sequences (save with appends, conflicting rewrites, hard states and
  snapshot installs; create_snapshot; compact; reopen) leave DiskStorage in exactly the
  state of a MemoryStorage given the same operations, before and after every reopen.
- A torn write at every byte offset of the last record is repaired to the state before
  that record.
- A cut of the newest segment anywhere leaves exactly the state up to the cut, or is
  refused; it is always refused below the record of the snapshot whose file is on disk.
- Damage contract, for a directory written by synced operations and one flipped bit:
  opening raises CorruptionError, or — only if the bit lies in the last record of the
  newest segment — succeeds with exactly the state before the operation that wrote that
  record (a flip there is indistinguishable from a torn write of it). Nothing else: no
  silent acceptance of damaged data, no loss of more than that one record.
- Garbage (overwritten ranges, truncated or deleted files, appended junk) makes open
  fail with StorageError (or CorruptionError), or succeed; never any other exception.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftcore import MemoryStorage
from raftcore.errors import CorruptionError, StorageError
from raftcore.raftpb import ConfState, Entry, HardState, Snapshot
from raftcore.wal import DiskStorage
from raftcore.wal.record import scan_records

from wal_testutil import Compact, CreateSnapshot, Op, OpGen, Save, apply, copy_model, state

SETTINGS = dict(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class QuietLogger:
    def warning(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass


def open_(d: Path | str, seg: int) -> DiskStorage:
    return DiskStorage.open(d, segment_size=seg, logger=QuietLogger())


def last_segment(d: Path) -> Path:
    return sorted(d.glob("*.wal"))[-1]


@settings(max_examples=60, **SETTINGS)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    seg=st.sampled_from([120, 400, 1500, 1 << 20]),
    reopen_p=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_random_operations_round_trip(seed: int, n: int, seg: int, reopen_p: float) -> None:
    rng = random.Random(seed)
    gen = OpGen(rng)
    with tempfile.TemporaryDirectory() as tmp:
        d = open_(tmp, seg)
        m = MemoryStorage()
        try:
            for _ in range(n):
                if rng.random() < reopen_p:
                    d.close()
                    d = open_(tmp, seg)
                    assert state(d) == state(m)
                op = gen.next(m)
                apply(d, op)
                apply(m, op)
                assert state(d) == state(m)
        finally:
            d.close()
        with open_(tmp, seg) as d2:
            assert state(d2) == state(m)
            # It keeps working after recovery.
            op = gen.next(m)
            apply(d2, op)
            apply(m, op)
        with open_(tmp, seg) as d3:
            assert state(d3) == state(m)


def _snap(index: int, term: int, data: bytes) -> Snapshot:
    s = Snapshot(data=data)
    s.metadata.index, s.metadata.term = index, term
    s.metadata.conf_state.voters.extend([1, 2, 3])
    return s


PREFIX: list[Op] = [
    Save(HardState(term=1, vote=1, commit=1), [Entry(index=i, term=1, data=b"e%d" % i) for i in range(1, 9)]),
    CreateSnapshot(3, ConfState(voters=[1]), b"snap3"),
    Save(HardState(term=2, vote=2, commit=4), [Entry(index=i, term=2, data=b"f%d" % i) for i in range(6, 11)]),
]
LAST_OPS: dict[str, Op] = {
    "append": Save(HardState(term=2, vote=2, commit=9), [Entry(index=i, term=2, data=b"g" * i) for i in range(11, 15)]),
    "truncate": Save(None, [Entry(index=i, term=3, data=b"t") for i in range(8, 10)]),
    "hard_state": Save(HardState(term=5, vote=1, commit=10), []),
    "install": Save(HardState(term=3, commit=40), [Entry(index=41, term=3)], _snap(40, 3, b"big" * 20)),
    "create_snapshot": CreateSnapshot(7, ConfState(voters=[1, 2]), b"snap7"),
    "compact": Compact(2),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(LAST_OPS))
def test_torn_last_record_at_every_offset_is_repaired(tmp_path: Path, kind: str) -> None:
    """Crash states of the last operation: the files as before it, plus any snapshot
    file it wrote first, plus its WAL record cut at every byte offset."""
    before, after = tmp_path / "before", tmp_path / "after"
    m = MemoryStorage()
    with open_(before, 1 << 20) as d:
        for op in PREFIX:
            apply(d, op)
            apply(m, op)
    prev = state(m)
    shutil.copytree(before, after)
    with open_(after, 1 << 20) as d:
        apply(d, LAST_OPS[kind])
    apply(m, LAST_OPS[kind])
    full = last_segment(after).read_bytes()
    start = len(last_segment(before).read_bytes())
    new_snaps = set(p.name for p in after.glob("*.snap")) - set(p.name for p in before.glob("*.snap"))
    assert len(full) > start
    for cut in range(start, len(full) + 1):
        crash = tmp_path / f"crash"
        shutil.copytree(before, crash)
        for name in new_snaps:
            shutil.copy(after / name, crash / name)
        last_segment(crash).write_bytes(full[:cut])
        with open_(crash, 1 << 20) as d:
            assert state(d) == (state(m) if cut == len(full) else prev), cut
        shutil.rmtree(crash)


def _build(tmp: Path, seed: int, n: int, seg: int) -> tuple[list[tuple[str, int, MemoryStorage]], MemoryStorage]:
    """Run n random synced ops; returns the history of (newest segment, its size, model)
    after each op (and initially), and the final model."""
    gen = OpGen(random.Random(seed))
    m = MemoryStorage()
    hist = []
    with open_(tmp, seg) as d:
        hist.append((last_segment(tmp).name, last_segment(tmp).stat().st_size, copy_model(m)))
        for _ in range(n):
            op = gen.next(m)
            apply(d, op)
            apply(m, op)
            hist.append((last_segment(tmp).name, last_segment(tmp).stat().st_size, copy_model(m)))
    return hist, m


@settings(max_examples=30, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), seg=st.sampled_from([200, 800, 1 << 20]))
def test_every_single_bit_flip_is_detected(seed: int, n: int, seg: int) -> None:
    rng = random.Random(seed ^ 0x5EED)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pristine = tmp / "pristine"
        hist, final = _build(pristine, seed, n, seg)
        seg_path = last_segment(pristine)
        buf = seg_path.read_bytes()
        records, damage = scan_records(buf, 32)
        assert damage is None
        last_off = records[-1][0]
        prevs = [mm for (name, size, mm) in hist if name == seg_path.name and size == last_off]
        prev = state(prevs[-1]) if prevs else None
        files = sorted(p.name for p in pristine.iterdir() if p.name != "LOCK")
        for _ in range(20):
            name = rng.choice(files)
            size = (pristine / name).stat().st_size
            pos, bit = rng.randrange(size), rng.randrange(8)
            if rng.random() < 0.5 and name == seg_path.name:  # aim at the tail more often
                pos = rng.randrange(last_off, size)
            work = tmp / "work"
            shutil.copytree(pristine, work)
            b = bytearray((work / name).read_bytes())
            b[pos] ^= 1 << bit
            (work / name).write_bytes(bytes(b))
            in_last_record = name == seg_path.name and pos >= last_off
            try:
                with open_(work, seg) as d:
                    got = state(d)
            except CorruptionError as e:
                assert str(work) in str(e) and "offset" in str(e) or "missing" in str(e), e
            else:
                assert in_last_record, f"flip at {name}:{pos} bit {bit} went undetected"
                assert prev is not None and got == prev, f"flip at {name}:{pos} lost more than the last record"
            shutil.rmtree(work)
        assert state(final) is not None


@settings(max_examples=30, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), seg=st.sampled_from([200, 800, 1 << 20]))
def test_a_cut_never_goes_below_the_snapshot(seed: int, n: int, seg: int) -> None:
    """The newest segment cut anywhere (a lost end, not only a torn write): open either
    succeeds with exactly the state the cut leaves, or refuses; below the record of the
    snapshot whose file is on disk it always refuses, and says "synced records are lost"
    (naming the segment) only there. A cut inside that record is a torn write of it."""
    rng = random.Random(seed ^ 0xC07)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pristine = tmp / "pristine"
        hist, final = _build(pristine, seed, n, seg)
        newest = last_segment(pristine)
        size = newest.stat().st_size
        # Where the record of the snapshot on disk starts, if in the newest segment: the
        # newest segment's size before the operation that made that snapshot.
        snap_rec = -1
        if final.snapshot().metadata.index > 0:
            k = next(k for k, h in enumerate(hist) if h[2].snapshot().metadata == final.snapshot().metadata)
            if hist[k - 1][0] == newest.name:
                snap_rec = hist[k - 1][1]
        for _ in range(12):
            at = rng.randrange(32, size + 1)
            cands = [mm for (name, sz, mm) in hist if name == newest.name and sz <= at]
            expected = cands[-1] if cands else None
            below = at < snap_rec  # at the record or inside it: a torn write of it
            work = tmp / "work"
            shutil.copytree(pristine, work)
            with open(work / newest.name, "r+b") as f:
                f.truncate(at)
            try:
                with open_(work, seg) as d:
                    got = state(d)
            except CorruptionError as e:
                lost = "synced records are lost" in str(e)
                assert below or not lost, f"cut at {at}/{size} above the snapshot refused: {e}"
                assert not lost or str(work / newest.name) in str(e), e
            else:
                assert not below, f"cut at {at}/{size}, below the snapshot, served"
                assert expected is not None and got == state(expected), f"cut at {at}/{size}"
            shutil.rmtree(work)


@settings(max_examples=30, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), seg=st.sampled_from([200, 1 << 20]),
       damage=st.lists(st.tuples(st.sampled_from(["overwrite", "truncate", "append", "delete", "zero"]),
                                 st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=3))
def test_garbage_only_ever_raises_storage_errors(seed: int, n: int, seg: int,
                                                 damage: list[tuple[str, int, int]]) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        _build(tmp, seed, n, seg)
        for kind, a, b in damage:
            files = sorted(p for p in tmp.iterdir() if p.name != "LOCK")
            if not files:
                break
            f = files[a % len(files)]
            data = bytearray(f.read_bytes())
            pos = b % (len(data) + 1)
            if kind == "overwrite":
                data[pos : pos + 1 + a % 64] = rng.randbytes(1 + a % 64)
            elif kind == "zero":
                data[pos : pos + 1 + a % 4096] = bytes(len(data[pos : pos + 1 + a % 4096]))
            elif kind == "truncate":
                del data[pos:]
            elif kind == "append":
                data += rng.randbytes(1 + a % 200)
            if kind == "delete":
                f.unlink()
            else:
                f.write_bytes(bytes(data))
        try:
            with open_(tmp, seg) as d:
                state(d)
                d.save(HardState(term=99), [Entry(index=d.last_index() + 1, term=99)])
        except StorageError:
            pass
