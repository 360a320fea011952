"""WAL benchmark (not a test): python bench/wal_bench.py [--dir DIR] [--profile]

Measures, in one run on one filesystem (DIR, default: the current directory):
  1. DiskStorage.save() of batches of 256 x 64-byte entries, each fdatasynced, against a
     bare write + os.fdatasync loop of the same bytes. Goal: at least
     0.6 x 256 / median(bare fdatasync) entries/s, i.e. the WAL's Python work per batch
     costs at most ~2/3 of one fdatasync.
  2. Reopening a WAL of 1,000,000 such entries: goal at most 5 s.
  3. Memory of 1,000,000 such entries held in a MemoryStorage (and in a reopened
     DiskStorage), measured as the RSS growth of a fresh child process: goal 250 MB.
Prints a table with PASS/FAIL per goal. --profile runs the save loop under pyinstrument.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from raftcore import MemoryStorage  # noqa: E402
from raftcore.raftpb import Entry, HardState  # noqa: E402
from raftcore.wal import DiskStorage  # noqa: E402
from raftcore.wal.storage import encode_save  # noqa: E402

BATCH = 256
ENTRY_DATA = 64
REOPEN_ENTRIES = 1_000_000
THROUGHPUT_RATIO_GOAL = 0.6
REOPEN_GOAL_S = 5.0
MEMORY_GOAL_MB = 250.0


def batches(n: int, start: int = 1, term: int = 1) -> list[list[Entry]]:
    data = os.urandom(ENTRY_DATA)
    out = []
    i = start
    for _ in range(n):
        out.append([Entry(index=i + k, term=term, data=data) for k in range(BATCH)])
        i += BATCH
    return out


def bare_fdatasync(path: Path, rounds: int, size: int) -> list[float]:
    """Append `size` bytes and fdatasync, `rounds` times; the fdatasync durations."""
    buf = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    out = []
    try:
        for _ in range(rounds):
            os.write(fd, buf)
            t = time.perf_counter()
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def wal_appends(path: Path, work: list[list[Entry]], profile: bool) -> float:
    """Seconds for save() of every batch, each with a hard state and fdatasync."""
    with DiskStorage.open(path) as st:
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
        t = time.perf_counter()
        for ents in work:
            st.save(HardState(term=1, vote=1, commit=ents[0].index), ents)
        elapsed = time.perf_counter() - t
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
    shutil.rmtree(path)
    return elapsed


def reopen(path: Path) -> tuple[float, float]:
    """(seconds to write, seconds to reopen) a WAL of REOPEN_ENTRIES entries."""
    n = REOPEN_ENTRIES // BATCH + (REOPEN_ENTRIES % BATCH > 0)
    t = time.perf_counter()
    with DiskStorage.open(path) as st:
        idx = 1
        for k in range(n):
            ents = [Entry(index=idx + j, term=1, data=os.urandom(ENTRY_DATA)) for j in range(BATCH)]
            st.save(HardState(term=1, commit=idx), ents, must_sync=(k == n - 1))
            idx += BATCH
    write_s = time.perf_counter() - t
    gc.collect()
    t = time.perf_counter()
    with DiskStorage.open(path) as st:
        assert st.last_index() >= REOPEN_ENTRIES
        open_s = time.perf_counter() - t
    return write_s, open_s


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, path: str, trace: bool) -> None:
    """In a fresh process: RSS growth (or, with trace, the tracemalloc-visible Python
    heap growth: tracemalloc's own bookkeeping would inflate RSS) of holding
    REOPEN_ENTRIES entries."""
    import tracemalloc

    gc.collect()
    if trace:
        tracemalloc.start()
    r0 = _rss_bytes()
    held: object
    if kind in ("memory", "memory-decoded"):
        from raftcore.wal.walpb import SaveRecord

        ms = MemoryStorage()
        i = 1
        while i <= REOPEN_ENTRIES:
            ents = [Entry(index=i + k, term=1, data=os.urandom(ENTRY_DATA)) for k in range(BATCH)]
            if kind == "memory-decoded":  # as entries arrive in a MsgApp or from the WAL
                ents = list(SaveRecord.FromString(SaveRecord(entries=ents).SerializeToString()).entries)
            ms.append(ents)
            i += BATCH
        held, count = ms, ms.last_index()
    else:
        st = DiskStorage.open(path)
        held, count = st, st.last_index()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] if trace else _rss_bytes() - r0
    print(json.dumps({"bytes": grown, "count": count}))
    del held


def measure_memory(kind: str, path: Path, trace: bool = False) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", kind, str(path), "trace" if trace else "rss"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".", help="directory on the filesystem to measure (default .)")
    ap.add_argument("--batches", type=int, default=600, help="fdatasynced batches per measurement")
    ap.add_argument("--profile", action="store_true", help="profile the save loop with pyinstrument")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        kind, path, how = args.memory_child
        memory_child(kind, path, how == "trace")
        return

    root = Path(tempfile.mkdtemp(prefix="walbench-", dir=args.dir))
    try:
        halves = [batches(args.batches // 2), batches(args.batches - args.batches // 2)]
        work = halves[0] + halves[1]
        record_size = len(encode_save(None, HardState(term=1, commit=1), work[0])) + 16
        # Interleave bare and WAL measurements so both see the same disk conditions.
        syncs: list[float] = []
        wal_s = 0.0
        for half in halves:
            syncs += bare_fdatasync(root / "bare", len(half), record_size)
            wal_s += wal_appends(root / "wal", half, args.profile and half is halves[0])
        med = statistics.median(syncs)
        eps = len(work) * BATCH / wal_s
        goal_eps = THROUGHPUT_RATIO_GOAL * BATCH / med
        per_batch_us = wal_s / len(work) * 1e6

        write_s, open_s = reopen(root / "big")
        mem = measure_memory("memory", root / "big")
        mem_traced = measure_memory("memory", root / "big", trace=True)
        mem_decoded = measure_memory("memory-decoded", root / "big")
        disk_mem = measure_memory("disk", root / "big")
        wal_bytes = sum(p.stat().st_size for p in (root / "big").glob("*.wal"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    mb = 1 << 20
    rows = [
        ("bare fdatasync, median (record-sized appends)", f"{med * 1e6:,.0f} us", "", ""),
        ("bare fdatasync bound = 256 / median", f"{BATCH / med:,.0f} entries/s", "", ""),
        ("WAL save() 256 x 64 B + fdatasync", f"{eps:,.0f} entries/s",
         f">= {goal_eps:,.0f} (0.6 x bound)", "PASS" if eps >= goal_eps else "FAIL"),
        ("  time per save() (incl. fdatasync)", f"{per_batch_us:,.0f} us", "", ""),
        (f"write {REOPEN_ENTRIES:,} entries, one final sync", f"{write_s:.2f} s ({wal_bytes / mb:.0f} MiB WAL)", "", ""),
        (f"reopen WAL of {REOPEN_ENTRIES:,} entries", f"{open_s:.2f} s",
         f"<= {REOPEN_GOAL_S:.0f} s", "PASS" if open_s <= REOPEN_GOAL_S else "FAIL"),
        (f"MemoryStorage, {REOPEN_ENTRIES:,} Entry(...) objects: RSS growth", f"{mem['bytes'] / mb:,.0f} MB",
         f"<= {MEMORY_GOAL_MB:.0f} MB", "PASS" if mem["bytes"] / mb <= MEMORY_GOAL_MB else "FAIL"),
        ("  of which Python heap (tracemalloc; upb arenas are not traced)",
         f"{mem_traced['bytes'] / mb:,.0f} MB", "", ""),
        (f"MemoryStorage, {REOPEN_ENTRIES:,} entries decoded from batches: RSS",
         f"{mem_decoded['bytes'] / mb:,.0f} MB", f"<= {MEMORY_GOAL_MB:.0f} MB",
         "PASS" if mem_decoded["bytes"] / mb <= MEMORY_GOAL_MB else "FAIL"),
        (f"reopened DiskStorage, {int(disk_mem['count']):,} entries: RSS growth",
         f"{disk_mem['bytes'] / mb:,.0f} MB", "(info)", ""),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"WAL benchmark on {os.path.abspath(args.dir)} (python {sys.version.split()[0]})")
    line = "-+-".join("-" * x for x in w)
    print(" | ".join(h.ljust(x) for h, x in zip(("measure", "value", "goal", "result"), w)))
    print(line)
    for r in rows:
        print(" | ".join(c.ljust(x) for c, x in zip(r, w)))


if __name__ == "__main__":
    main()
