"""A simulated disk for one zero: the WalStorage seam (zero/replica/ports.py) over
raftcore's MemoryStorage, with a crash that loses what was not synced.

`SimDisk` outlives the zero's incarnations; each start opens a `SimStorage` on it. A
storage keeps two MemoryStorages: `live` (what the node reads: every write at once, as
a page cache would show it) and `durable` (what survives a crash). A write with
must_sync (entries, a new term or vote, a snapshot) makes everything before it durable;
a write without it (only a new commit index) waits in `unsynced`, and a crash keeps a
seeded prefix of that queue (the kernel may have written some of it back). After a crash
the storage refuses nothing but does nothing: writes still in flight in the simulated WAL
thread were lost with the process.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from raftcore import MemoryStorage, raftpb

__all__ = ["SimDisk", "SimStorage"]


def _write(s: MemoryStorage, hs: raftpb.HardState | None, entries: Sequence[raftpb.Entry],
           snap: raftpb.Snapshot | None) -> None:
    # The order of the Ready contract: snapshot, entries, hard state.
    if snap is not None and snap.metadata.index > s.snapshot().metadata.index:
        s.apply_snapshot(snap)
    if entries:
        s.append(entries)
    if hs is not None:
        s.set_hard_state(hs)


class SimDisk:
    """What one zero's disk holds across crashes (its durable MemoryStorage)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.durable = MemoryStorage()
        self.current: SimStorage | None = None
        self.syncs = 0
        self.lost_writes = 0  # unsynced writes a crash dropped

    def open(self) -> SimStorage:
        self.current = SimStorage(self)
        return self.current

    def crash(self) -> None:
        """The process dies: the open storage stops writing; unsynced writes survive
        only as a seeded prefix."""
        s = self.current
        self.current = None
        if s is None or s.dead:
            return
        s.dead = True
        keep = self.rng.randint(0, len(s.unsynced))
        for hs, ents, snap in s.unsynced[:keep]:
            _write(self.durable, hs, ents, snap)
        self.lost_writes += len(s.unsynced) - keep
        s.unsynced.clear()


class SimStorage:
    """zero.replica.ports.WalStorage on a SimDisk (see the module doc)."""

    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk
        self.live = disk.durable.copy()
        self.unsynced: list[tuple[raftpb.HardState | None, list[raftpb.Entry], raftpb.Snapshot | None]] = []
        self.dead = False

    # -- Storage (the read side: the live view) ----------------------------------------------
    def initial_state(self) -> tuple[raftpb.HardState, raftpb.ConfState]:
        return self.live.initial_state()

    def entries(self, lo: int, hi: int, max_size: int = 1 << 62) -> list[raftpb.Entry]:
        return self.live.entries(lo, hi, max_size)

    def term(self, i: int) -> int:
        return self.live.term(i)

    def last_index(self) -> int:
        return self.live.last_index()

    def first_index(self) -> int:
        return self.live.first_index()

    def snapshot(self) -> raftpb.Snapshot:
        return self.live.snapshot()

    # -- the writes of the Ready loop -----------------------------------------------------------
    @property
    def repaired(self) -> str | None:
        return None

    def save(self, hard_state: raftpb.HardState | None, entries: Sequence[raftpb.Entry],
             snapshot: raftpb.Snapshot | None = None, *, must_sync: bool = True) -> None:
        if self.dead:
            return
        ents = list(entries)
        _write(self.live, hard_state, ents, snapshot)
        self.unsynced.append((hard_state, ents, snapshot))
        if must_sync:
            self._sync()

    def _sync(self) -> None:
        for hs, ents, snap in self.unsynced:
            _write(self.disk.durable, hs, ents, snap)
        self.unsynced.clear()
        self.disk.syncs += 1

    def create_snapshot(self, index: int, conf_state: raftpb.ConfState | None, data: bytes) -> raftpb.Snapshot:
        # DiskStorage writes and syncs the snapshot file before it answers.
        snap = self.live.create_snapshot(index, conf_state, data)
        if not self.dead:
            self._sync()
            self.disk.durable.create_snapshot(index, conf_state, data)
        return snap

    def compact(self, compact_index: int) -> None:
        self.live.compact(compact_index)
        if not self.dead:
            self.disk.durable.compact(compact_index)

    def close(self) -> None:
        if not self.dead:
            self._sync()
