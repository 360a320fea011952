"""InvariantChecker: Raft's safety properties (Raft paper Figure 3), checked incrementally.

The cluster calls a hook at each event that can break a property, so each check costs
only the size of what changed (O(new entries)), not a scan of every log:

- Election Safety: at most one leader per term, over the whole history (`on_leader`).
- Vote safety: a node never votes for two candidates in one term, across restarts
  (`on_hard_state`; HardState is persisted, so this covers crashes).
- Log Matching: if two persisted logs hold an entry with the same index and term, the logs
  are identical up to it. Checked inductively (`on_append`): each (index, term) seen
  anywhere must always carry the same type/data and follow the same previous term; by
  induction two logs that agree on (i, t) agree on every entry before i.
- Leader Completeness: an entry committed while the committing node was in term t is in
  the log of every leader of a term > t (`on_leader`, and on each commit for the leaders
  already in office).
- State Machine Safety: no two nodes apply different entries at one index (`on_apply`,
  one global index -> entry map); an applied entry is committed on the applying node.
- Monotonicity: a node's term and HardState.commit never decrease, across restarts;
  the commit never points past the persisted log; applied never exceeds commit.
- Linearizable ReadIndex: a read's index is at least the highest commit index any node
  knew when the read was issued (`on_read_issued` / `on_read_state`).

A violation calls `fail(message)`, which the cluster turns into an AssertionError
carrying the seed, the tick and the recent trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

from ..raftpb import Entry, HardState, Snapshot
from ..storage import MemoryStorage

__all__ = ["InvariantChecker", "InvariantViolation"]


class InvariantViolation(AssertionError):
    """A Raft safety property was broken in a simulation."""


class InvariantChecker:
    """Global knowledge of one simulated cluster's history, and the checks over it."""

    def __init__(self, fail: Callable[[str], NoReturn]) -> None:
        self.fail = fail
        # term -> the id of the (only) node that was leader in it
        self.leaders: dict[int, int] = {}
        # (node, term) -> the id it voted for in that term (0 never recorded)
        self.votes: dict[tuple[int, int], int] = {}
        # node -> highest persisted term / commit ever seen
        self.max_term: dict[int, int] = {}
        self.max_commit: dict[int, int] = {}
        # (index, term) -> (type, data, previous entry's term): log matching's witness
        self.log_witness: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        # index -> term of the entry known committed there
        self.committed: dict[int, int] = {}
        # term t -> highest index seen committed by a node whose term was t
        self.commit_by_term: dict[int, int] = {}
        # index -> (term, type, data) applied there by anyone
        self.applied: dict[int, tuple[int, int, bytes]] = {}
        # read context -> highest commit index known when the read was issued
        self.reads: dict[bytes, int] = {}

    @property
    def max_committed(self) -> int:
        return max(self.max_commit.values(), default=0)

    # -- persistence ---------------------------------------------------------------
    def on_append(self, nid: int, storage: MemoryStorage, entries: Sequence[Entry]) -> None:
        """Called after `entries` were appended to node `nid`'s storage."""
        first = storage.first_index()
        for e in entries:
            if e.index < first:
                continue  # already covered by the snapshot
            if e.index > storage.last_index():
                self.fail(
                    f"node {nid}: storage ends at index {storage.last_index()} right after "
                    f"appending entry {e.index}"
                )
            got = storage.term(e.index)
            if got != e.term:
                self.fail(
                    f"node {nid}: storage holds term {got} at index {e.index} right after "
                    f"appending an entry of term {e.term}"
                )
            prev = storage.term(e.index - 1) if e.index > 1 else 0
            key = (e.index, e.term)
            witness = (e.type, e.data, prev)
            seen = self.log_witness.setdefault(key, witness)
            if seen != witness:
                self.fail(
                    f"log matching: node {nid} holds entry (index {e.index}, term {e.term}) "
                    f"as (type {e.type}, data {e.data!r}, previous term {prev}) but another "
                    f"log held it as (type {seen[0]}, data {seen[1]!r}, previous term {seen[2]})"
                )

    def on_snapshot(self, nid: int, snap: Snapshot) -> None:
        """Called when node `nid` installs `snap`."""
        idx, term = snap.metadata.index, snap.metadata.term
        if idx > self.max_committed:
            self.fail(
                f"node {nid} installed a snapshot at index {idx} beyond every node's "
                f"commit index ({self.max_committed})"
            )
        known = self.committed.get(idx)
        if known is not None and known != term:
            self.fail(
                f"node {nid} installed a snapshot at index {idx} term {term} but the entry "
                f"committed there has term {known}"
            )

    def on_hard_state(
        self, nid: int, old: HardState, new: HardState, storage: MemoryStorage
    ) -> None:
        """Called after node `nid` persisted `new` (its previous persisted state `old`)."""
        if new.term < self.max_term.get(nid, 0):
            self.fail(f"node {nid}: term went back from {self.max_term[nid]} to {new.term}")
        self.max_term[nid] = new.term
        if new.vote:
            voted = self.votes.setdefault((nid, new.term), new.vote)
            if voted != new.vote:
                self.fail(
                    f"node {nid} voted twice in term {new.term}: for {voted}, then {new.vote}"
                )
        prev_commit = self.max_commit.get(nid, 0)
        if new.commit < prev_commit:
            self.fail(f"node {nid}: commit went back from {prev_commit} to {new.commit}")
        if new.commit > storage.last_index():
            self.fail(
                f"node {nid}: persisted commit {new.commit} is past its persisted log "
                f"(last index {storage.last_index()})"
            )
        if new.commit > prev_commit:
            self.max_commit[nid] = new.commit
            if new.commit > self.commit_by_term.get(new.term, 0):
                self.commit_by_term[new.term] = new.commit
            first = storage.first_index()
            for idx in range(max(prev_commit + 1, first - 1), new.commit + 1):
                if idx == 0:
                    continue
                term = storage.term(idx)
                known = self.committed.setdefault(idx, term)
                if known != term:
                    self.fail(
                        f"node {nid} committed term {term} at index {idx} where term "
                        f"{known} was committed before"
                    )

    def check_leader_has(self, nid: int, term: int, storage: MemoryStorage, upto_term: int) -> None:
        """Leader Completeness for leader `nid` of `term`: it holds every entry committed
        by a node whose term was below `upto_term` (pass `term`)."""
        need = max((c for t, c in self.commit_by_term.items() if t < upto_term), default=0)
        if need == 0:
            return
        want = self.committed.get(need)
        snap_idx = storage.first_index() - 1
        if need <= snap_idx:
            return  # compacted into its snapshot; log matching covers the rest
        if need > storage.last_index():
            self.fail(
                f"leader completeness: leader {nid} of term {term} has last index "
                f"{storage.last_index()} but index {need} was committed"
            )
        got = storage.term(need)
        if want is not None and got != want:
            self.fail(
                f"leader completeness: leader {nid} of term {term} holds term {got} at "
                f"index {need}, where term {want} was committed"
            )

    def on_leader(self, nid: int, term: int, storage: MemoryStorage) -> None:
        """Called when node `nid` reports it became leader of `term` (after persisting)."""
        other = self.leaders.setdefault(term, nid)
        if other != nid:
            self.fail(f"election safety: nodes {other} and {nid} were both leader in term {term}")
        self.check_leader_has(nid, term, storage, term)

    # -- application ---------------------------------------------------------------
    def on_apply(
        self, nid: int, index: int, term: int, type_: int, data: bytes, commit: int
    ) -> None:
        """Called when node `nid` applies an entry; `commit` is its persisted commit."""
        if index > commit:
            self.fail(f"node {nid} applied index {index} beyond its commit index {commit}")
        rec = (term, type_, data)
        seen = self.applied.setdefault(index, rec)
        if seen != rec:
            self.fail(
                f"state machine safety: node {nid} applied (term {term}, type {type_}, "
                f"data {data!r}) at index {index}; another node applied (term {seen[0]}, "
                f"type {seen[1]}, data {seen[2]!r}) there"
            )

    # -- reads ---------------------------------------------------------------------
    def on_read_issued(self, ctx: bytes) -> None:
        self.reads[ctx] = self.max_committed

    def on_read_state(self, nid: int, index: int, ctx: bytes) -> None:
        need = self.reads.get(ctx)
        if need is not None and index < need:
            self.fail(
                f"ReadIndex on node {nid} returned index {index} for {ctx!r}, but index "
                f"{need} was committed before the read was issued"
            )
