"""View: the in-memory MemoryStorage that serves every DiskStorage read, plus the state
changes WAL replay needs and the checkpoint that starts each segment.

Invariant (while the storage is open and not poisoned): the view equals the replay of
the WAL's files (docs/DESIGN.md ("Durable storage"), model).
"""

from __future__ import annotations

from ..errors import UnavailableError
from ..raftpb import Snapshot, SnapshotMetadata
from ..storage import MemoryStorage
from .walpb import Checkpoint

__all__ = ["View"]


class View(MemoryStorage):
    """MemoryStorage plus the state changes replay needs that the public API refuses:
    recorded (index, term) pairs are applied without looking entries up, because the
    entries they refer to may live only in deleted segments."""

    __slots__ = ()

    def replay_reset(self, meta: SnapshotMetadata) -> None:
        """save(snapshot=...): the log restarts after the snapshot."""
        self.replay_snapshot_meta(meta)
        self._reset(meta.index, meta.term)

    def replay_reset_entries(self, index: int, term: int) -> None:
        """Start from a checkpoint: the view is compacted to its last index."""
        self._reset(index, term)

    def replay_snapshot_meta(self, meta: SnapshotMetadata) -> None:
        s = Snapshot()
        if meta.ByteSize():  # keep "no snapshot" identical to MemoryStorage's Snapshot()
            s.metadata.CopyFrom(meta)
        self._snapshot = s

    def replay_compact(self, index: int, term: int) -> bool:
        """compact(index) whose entry had `term`; False if the view is already
        compacted further (only while replaying from a checkpoint, see recovery.replay)."""
        if index < self._offset:
            return False
        if index > self.last_index():
            raise UnavailableError(f"compact {index} is out of bound lastindex({self.last_index()})")
        self._compact_to(index, term)
        return True

    def offset(self) -> int:
        return self._offset

    def set_snapshot(self, snap: Snapshot) -> None:
        self._snapshot = snap

    def checkpoint(self) -> bytes:
        """The Checkpoint record that starts a new segment: the state replay starts from
        when every older segment is gone."""
        last = self.last_index()
        out: bytes = Checkpoint(
            hard_state=self.initial_state()[0],
            snapshot=self.snapshot().metadata,
            offset_index=self.offset(),
            offset_term=self.term(self.offset()),
            last_index=last,
            last_term=self.term(last),
        ).SerializeToString()
        return out
