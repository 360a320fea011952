"""The unstable tail of the log: entries (and maybe a snapshot) not yet persisted
(etcd log_unstable.go).

Invariants:
- entries[i] has index offset + i;
- if snapshot is set, offset == snapshot.metadata.index + 1 (entries follow it);
- entries below offset_in_progress (and the snapshot when snapshot_in_progress) were
  handed to the application in a Ready and are being persisted; they stay here until
  stable_to()/stable_snap_to() confirm the write (on advance()).
"""

from __future__ import annotations

from .raftpb import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    __slots__ = ("snapshot", "entries", "offset", "snapshot_in_progress", "offset_in_progress", "logger")

    def __init__(self, offset: int, logger) -> None:  # type: ignore[no-untyped-def]
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.snapshot_in_progress = False
        self.offset_in_progress = offset
        self.logger = logger

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        off = self.offset
        if i < off:
            s = self.snapshot
            if s is not None and s.metadata.index == i:
                return s.metadata.term
            return None
        j = i - off
        if j < len(self.entries):
            return self.entries[j].term
        return None

    # -- handing out to the application ---------------------------------------------
    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        j = self.offset_in_progress - self.offset
        if j >= len(self.entries):
            return []
        return self.entries[j:]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """Everything handed out so far is now being persisted."""
        if self.entries:
            self.offset_in_progress = self.offset + len(self.entries)
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    # -- persistence confirmed --------------------------------------------------------
    def stable_to(self, index: int, term: int) -> list[Entry]:
        """Entries up to (index, term) are persisted; returns the entries that left the
        unstable tail. Ignored when the entry was since replaced (a different term) or
        is already stable."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            return []
        n = index + 1 - self.offset
        done = self.entries[:n]
        del self.entries[:n]
        self.offset = index + 1
        if self.offset_in_progress < self.offset:
            self.offset_in_progress = self.offset
        return done

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    # -- mutation -----------------------------------------------------------------------
    def restore(self, s: Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = s
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry]) -> None:
        first = ents[0].index
        off = self.offset
        n = len(self.entries)
        if first == off + n:
            # The common case: a plain append.
            self.entries.extend(ents)
        elif first <= off:
            # Replace everything (the log is being rewritten from before our tail).
            self.offset = first
            self.entries = list(ents)
        else:
            # Truncate to first, then append.
            del self.entries[first - off:]
            self.entries.extend(ents)
        if self.offset_in_progress > first:
            self.offset_in_progress = first

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi); the caller guarantees the bounds are inside this tail."""
        off = self.offset
        if lo < off or hi > off + len(self.entries) or lo > hi:
            raise AssertionError(f"unstable.slice[{lo},{hi}) out of bound [{off},{off + len(self.entries)}]")
        return self.entries[lo - off:hi - off]
