"""RaftLog: the log as the core sees it — persisted entries through Storage plus the
unstable tail (etcd log.go).

Invariants: first_index - 1 <= applied <= applying <= committed <= last_index.

Persisted entries not yet applied stay cached here as the protobuf objects they were
(`_cache`, indexes [_cache_lo, _cache_lo + len)), so that handing committed entries to
the application does not rebuild them from Storage — a leader's entries become stable
before they commit. The cache is a read-through copy of storage: it only ever holds
entries that storage also has.
`applying` is the last index handed to the application in a Ready; `applied` the last
the application confirmed (advance()).
"""

from __future__ import annotations

from .errors import CompactedError, UnavailableError
from .log_unstable import Unstable
from .raftpb import Entry, Snapshot
from .storage import NO_LIMIT, Storage, limit_size

__all__ = ["RaftLog"]

# At most this many persisted, unapplied entries are kept as objects (older ones are
# read back from Storage).
_CACHE_LIMIT = 1 << 16


class RaftLog:
    __slots__ = ("storage", "unstable", "committed", "applying", "applied",
                 "max_applying_size", "logger", "_cache", "_cache_lo")

    def __init__(self, storage: Storage, logger, max_applying_size: int = NO_LIMIT) -> None:  # type: ignore[no-untyped-def]
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1, logger)
        # Initialize committed and applied to the snapshot point (everything before
        # the first index was compacted, so it was committed and applied).
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_size = max_applying_size
        self.logger = logger
        self._cache: list[Entry] = []
        self._cache_lo = 0

    def __repr__(self) -> str:
        return (f"committed={self.committed} applied={self.applied} applying={self.applying} "
                f"unstable.offset={self.unstable.offset} len={len(self.unstable.entries)}")

    # -- indexes and terms ----------------------------------------------------------------
    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        if i is not None:
            return i
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term_or_zero(self.last_index())

    def term(self, i: int) -> int:
        """The term of entry i. Raises CompactedError/UnavailableError outside the valid
        range [first_index - 1, last_index]."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i + 1 < self.first_index():
            raise CompactedError(f"index {i} is compacted")
        if i > self.last_index():
            raise UnavailableError(f"index {i} is unavailable")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """term(i), or 0 when i is out of range (hot path: no exceptions)."""
        u = self.unstable
        off = u.offset
        if i >= off:
            j = i - off
            if j < len(u.entries):
                return u.entries[j].term
            return 0
        s = u.snapshot
        if s is not None:
            return s.metadata.term if s.metadata.index == i else 0
        st = self.storage
        if i + 1 < st.first_index() or i > st.last_index():
            return 0
        try:
            return st.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def match_term(self, i: int, t: int) -> bool:
        return self.term_or_zero(i) == t and (t != 0 or i == 0 or self._has_term(i))

    def _has_term(self, i: int) -> bool:
        # Only reached for term 0 at i > 0, which no real entry has after bootstrap;
        # kept exact for entries of term 0 that tests may construct.
        try:
            self.term(i)
            return True
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log (last_index, last_term) is at least as up to date
        as ours (§5.4.1)."""
        lt = self.last_term()
        return last_term > lt or (last_term == lt and last_index >= self.last_index())

    # -- appending --------------------------------------------------------------------------
    def maybe_append(self, index: int, log_term: int, committed: int, ents: list[Entry]) -> int | None:
        """Append `ents` after (index, log_term) if our log matches there (§5.3).
        Returns the index of the last new entry, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflicts with committed entry [committed({self.committed})]")
            self.append(ents[ci - index - 1:])
        self.commit_to(min(committed, lastnewi))
        return lastnewi

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        k = ents[0].index - self._cache_lo
        if k < len(self._cache):
            # Persisted entries are being replaced: the cache must not outlive them.
            del self._cache[max(k, 0):]
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list[Entry]) -> int:
        """The index of the first entry of `ents` that is new or conflicts with our log,
        0 if all are present.

        By the Log Matching property (§5.3) the matching entries form a prefix of
        `ents`, so when the last overlapping entry matches, all do; otherwise binary
        search finds the first mismatch in O(log n) term lookups."""
        if not ents:
            return 0
        last = self.last_index()
        first_idx = ents[0].index
        if first_idx > last:
            return first_idx
        # Overlap is ents[0 .. k-1], with k = number of entries at or below last.
        k = min(len(ents), last - first_idx + 1)
        e = ents[k - 1]
        if self.match_term(e.index, e.term):
            return ents[k].index if k < len(ents) else 0
        lo, hi = 0, k - 1  # first mismatch lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            m = ents[mid]
            if self.match_term(m.index, m.term):
                lo = mid + 1
            else:
                hi = mid
        return ents[lo].index

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, term(i)) with i <= index and term(i) <= term; used for fast
        log rejection. An unknown term (compacted/unavailable) counts as a match with
        term 0."""
        while index > 0:
            try:
                our = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # -- reading ------------------------------------------------------------------------
    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries from index i to the end, limited to max_size bytes (at least one)."""
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries [lo, hi) across storage and the unstable tail."""
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"index {lo} is compacted (first index {fi})")
        li = self.last_index()
        if hi > li + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{li}]")
        if lo == hi:
            return []
        off = self.unstable.offset
        if lo >= off:
            ents = self.unstable.slice(lo, hi)
            return limit_size(ents, max_size) if max_size < NO_LIMIT else ents
        cut = min(hi, off)
        clo = self._cache_lo
        if clo <= lo and clo + len(self._cache) == off:
            ents = self._cache[lo - clo:cut - clo]
            if hi > off:
                ents += self.unstable.slice(off, hi)
            return limit_size(ents, max_size) if max_size < NO_LIMIT else ents
        ents = self.storage.entries(lo, cut, max_size)
        if not ents:
            raise AssertionError("storage returned no entries")
        if len(ents) < cut - lo or hi <= off:
            return ents  # hit the size limit, or everything came from storage
        rest = self.unstable.slice(off, hi)
        if max_size >= NO_LIMIT:
            return ents + rest
        size = sum(e.ByteSize() for e in ents)
        out = list(ents)
        for e in rest:
            size += e.ByteSize()
            if size > max_size:
                break
            out.append(e)
        return out

    def snapshot(self) -> Snapshot:
        s = self.unstable.snapshot
        if s is not None:
            return s
        return self.storage.snapshot()

    # -- commit and apply ---------------------------------------------------------------
    def commit_to(self, tocommit: int) -> None:
        # Never decrease commit.
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [last_index({self.last_index()})]. "
                    "Was the raft log corrupted, truncated, or lost?")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to max_index only if that entry is of the current term: a leader
        never commits entries of earlier terms by counting replicas (§5.4.2)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(f"applied({i}) is out of range [prev_applied({self.applied}), committed({self.committed})]")
        self.applied = i
        if self.applying < i:
            self.applying = i
        k = i + 1 - self._cache_lo
        if k > 0:
            del self._cache[:k]
            self._cache_lo += k

    def has_next_committed_ents(self) -> bool:
        if self.unstable.snapshot is not None:
            return False  # the snapshot must be applied first
        return self.committed > self.applying

    def next_committed_ents(self) -> list[Entry]:
        """Committed entries not yet handed out for applying. Unstable entries are
        included: the application persists a Ready's entries before applying its
        committed entries."""
        if self.unstable.snapshot is not None:
            return []
        lo, hi = self.applying + 1, self.committed + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_size)

    def accept_applying(self, i: int) -> None:
        self.applying = i

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def restore(self, s: Snapshot) -> None:
        self.committed = s.metadata.index
        self.unstable.restore(s)
        self._cache = []
        self._cache_lo = 0

    def stable_to(self, i: int, t: int) -> None:
        done = self.unstable.stable_to(i, t)
        if not done:
            return
        first = done[0].index
        cache = self._cache
        if first > self.applied:
            if cache and self._cache_lo + len(cache) == first:
                cache.extend(done)
            else:
                self._cache = list(done)
                self._cache_lo = first
        if len(self._cache) > _CACHE_LIMIT:
            k = len(self._cache) - _CACHE_LIMIT
            del self._cache[:k]
            self._cache_lo += k

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def stable_last_index(self) -> int:
        """The last index known to be durably persisted."""
        return self.unstable.offset - 1
