"""The Storage interface the core reads its stable log through, and MemoryStorage.

The core never writes to Storage: the application persists what a Ready hands it
(`entries`, `hard_state`, `snapshot`) and only then calls `advance()`. Storage is the
read side of that durable state (etcd/raft storage.go).

Invariant of MemoryStorage: `_ents[0]` is a dummy entry whose index and term are those of
the last compacted entry (the snapshot's), so `first_index() == _ents[0].index + 1` and
entry i lives at `_ents[i - _ents[0].index]`.
"""

from __future__ import annotations

from array import array
from typing import Protocol, Sequence, runtime_checkable

from .errors import (
    CompactedError,
    SnapshotOutOfDateError,
    UnavailableError,
)
from .raftpb import ConfState, Entry, HardState, Snapshot

__all__ = ["Storage", "MemoryStorage", "limit_size", "NO_LIMIT"]

NO_LIMIT = (1 << 64) - 1


def limit_size(ents: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of `ents` whose total encoded size is at most `max_size`;
    always at least one entry so that progress is possible (etcd limitSize)."""
    if len(ents) <= 1 or max_size >= NO_LIMIT:
        return ents
    size = ents[0].ByteSize()
    for i in range(1, len(ents)):
        size += ents[i].ByteSize()
        if size > max_size:
            return ents[:i]
    return ents


@runtime_checkable
class Storage(Protocol):
    """Read access to the persisted log, hard state and snapshot."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted HardState and the ConfState of the latest snapshot/config."""
        ...

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries [lo, hi), at least one if any, limited to `max_size` bytes.
        Raises CompactedError if lo <= the compacted index, UnavailableError if hi is
        beyond last_index() + 1."""
        ...

    def term(self, i: int) -> int:
        """The term of entry i, for i in [first_index() - 1, last_index()]."""
        ...

    def last_index(self) -> int:
        ...

    def first_index(self) -> int:
        """The index of the first entry available through entries(); older entries
        were compacted into the snapshot."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot. May raise SnapshotTemporarilyUnavailableError."""
        ...


class MemoryStorage:
    """An in-memory Storage, as etcd's MemoryStorage. Not thread-safe: raftcore's core
    is single-threaded and raftcore.Node serializes access.

    Entries are kept column-wise (terms, types, payloads) rather than as protobuf
    objects: a protobuf Entry costs about 500 bytes of arena each, the columns about
    120 for a 64-byte payload. Entry objects are built on read, which is rare: the core
    reads recent entries from its unstable log."""

    __slots__ = ("_hard_state", "_snapshot", "_offset", "_terms", "_types", "_datas")

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._reset(0, 0)

    def _reset(self, index: int, term: int) -> None:
        """Empty the log; (index, term) becomes the dummy entry (the last compacted)."""
        # Position k holds entry offset + k; position 0 is the dummy entry.
        self._offset = index
        self._terms = array("Q", (term,))
        self._types = bytearray(1)
        self._datas: list[bytes] = [b""]

    def copy(self) -> "MemoryStorage":
        hs, snap = HardState(), Snapshot()
        hs.CopyFrom(self._hard_state)
        snap.CopyFrom(self._snapshot)
        return self._of(hs, snap, self._offset, array("Q", self._terms), bytearray(self._types),
                                 list(self._datas))

    @classmethod
    def _of(cls, hard_state: HardState, snapshot: Snapshot, offset: int, terms: "array[int]", types: bytearray,
            datas: list[bytes]) -> "MemoryStorage":
        """A storage made of these parts (they are taken, not copied)."""
        self = cls.__new__(cls)
        self._hard_state, self._snapshot, self._offset = hard_state, snapshot, offset
        self._terms, self._types, self._datas = terms, types, datas
        return self

    # -- Storage -------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        hs = HardState()
        hs.CopyFrom(self._hard_state)
        cs = ConfState()
        cs.CopyFrom(self._snapshot.metadata.conf_state)
        return hs, cs

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        offset = self._offset
        if lo <= offset:
            raise CompactedError(f"requested index {lo} is compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({self.last_index()})")
        # Only the dummy entry: nothing available.
        if len(self._terms) == 1:
            raise UnavailableError("storage has no entries")
        terms, types, datas = self._terms, self._types, self._datas
        if max_size >= NO_LIMIT:
            return [Entry(term=terms[k], index=offset + k, type=types[k], data=datas[k])  # type: ignore[arg-type]
                    for k in range(lo - offset, hi - offset)]
        out: list[Entry] = []
        size = 0
        for k in range(lo - offset, hi - offset):
            e = Entry(term=terms[k], index=offset + k, type=types[k], data=datas[k])  # type: ignore[arg-type]  # an int is an enum value; no per-entry conversion on this hot path
            size += e.ByteSize()
            if out and size > max_size:
                break
            out.append(e)
        return out

    def term(self, i: int) -> int:
        offset = self._offset
        if i < offset:
            raise CompactedError(f"term of index {i} is compacted (first index {offset + 1})")
        if i - offset >= len(self._terms):
            raise UnavailableError(f"index {i} is beyond last index {self.last_index()}")
        return self._terms[i - offset]

    def last_index(self) -> int:
        return self._offset + len(self._terms) - 1

    def first_index(self) -> int:
        return self._offset + 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes by the application ----------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = HardState(term=hs.term, vote=hs.vote, commit=hs.commit)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the contents of this storage with the snapshot's."""
        if self._snapshot.metadata.index >= snap.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at index {snap.metadata.index} is not newer than {self._snapshot.metadata.index}"
            )
        s = Snapshot()
        s.CopyFrom(snap)
        self._snapshot = s
        self._reset(snap.metadata.index, snap.metadata.term)

    def create_snapshot(self, i: int, cs: ConfState | None, data: bytes) -> Snapshot:
        """Make a snapshot of the state up to index i (already applied by the
        application), to be retrieved by snapshot(); older entries stay until compact()."""
        if i <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot index {i} is not newer than {self._snapshot.metadata.index}"
            )
        if i > self.last_index():
            raise UnavailableError(f"snapshot {i} is out of bound lastindex({self.last_index()})")
        if i < self._offset:
            raise CompactedError(f"snapshot index {i} is compacted (first index {self.first_index()})")
        s = Snapshot(data=data)
        s.metadata.index = i
        s.metadata.term = self._terms[i - self._offset]
        if cs is not None:
            s.metadata.conf_state.CopyFrom(cs)
        self._snapshot = s
        return s

    def compact(self, compact_index: int) -> None:
        """Discard entries before compact_index. The application must not compact past
        its applied index."""
        offset = self._offset
        if compact_index <= offset:
            raise CompactedError(f"compact index {compact_index} is already compacted")
        if compact_index > self.last_index():
            raise UnavailableError(
                f"compact {compact_index} is out of bound lastindex({self.last_index()})"
            )
        self._compact_to(compact_index, self._terms[compact_index - offset])

    def _compact_to(self, index: int, term: int) -> None:
        """Drop entries up to index; (index, term) becomes the dummy entry."""
        k = index - self._offset
        self._offset = index
        del self._terms[:k]
        del self._types[:k]
        del self._datas[:k]
        self._terms[0] = term
        self._types[0] = 0
        self._datas[0] = b""

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, truncating any conflicting suffix (the entries must be
        contiguous and start at or before last_index() + 1)."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        pos = entries[0].index - self._offset
        n = len(self._terms)
        if pos > n:
            raise UnavailableError(
                f"missing log entry [last: {self.last_index()}, append at: {entries[0].index}]"
            )
        if pos < n:
            del self._terms[pos:]
            del self._types[pos:]
            del self._datas[pos:]
        self._terms.extend([e.term for e in entries])
        self._types.extend([e.type for e in entries])
        self._datas.extend([e.data for e in entries])
