"""The transaction oracle's replicated state: conflict keys and decisions (pure).

Snapshot isolation, first committer wins, as Dgraph Zero's Oracle — but every decision
is a Raft entry, so a new leader knows every decision and every conflict key the old one
made and aborts nothing in flight (Dgraph aborts every transaction that started before
it took over).

The leader allocates timestamp slots from its timestamp leases and proposes a batch of
requests as one DecideTxns: request i gets slot first_commit_ts + i, which becomes its
commit_ts if it commits (an abort leaves its slot unused). apply decides each request
in order against this state:

1. refused, nothing decided (a response with a gRPC code): start_ts 0 or not below its
   slot, more than MAX_CONFLICT_KEYS keys, or a start_ts whose decision was purged;
2. already decided: the same decision again (one decision per start_ts, final);
3. CLIENT_ABORT if the client gave up; TOO_OLD below safe_ts; WRONG_GROUP when a
   tablet it wrote is not owned by the group it names; TABLET_MOVING when one is
   fenced by a move; CONFLICT when a commit after start_ts wrote one of its keys;
4. otherwise it commits: its keys now carry its commit_ts.

A batch whose first slot is not above every slot applied before is refused whole
(UNAVAILABLE, retry): so the log's order is the commit_ts order, which the Oracle
stream relies on.

Memory stays bounded on an endless workload. AdvanceSafeTs drops every conflict key
last written at or below safe_ts (no transaction that may still commit can conflict on
it: those below safe_ts are TOO_OLD) and every decision whose slot is below
purge_below (the leader passes the safe_ts of one retention window ago). Both are
found through FIFOs in slot order — appended in apply order, which is slot order — so a
purge costs what it removes, never a scan.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from zero.pb import state_pb2, zero_pb2

__all__ = ["OracleState", "Owner", "Ownership", "MAX_CONFLICT_KEYS", "REASON_NAMES", "DECIDED_EARLIER",
           "check_request"]

MAX_CONFLICT_KEYS = 100_000

# gRPC status codes a refused request carries in CommitResponse.code.
INVALID_ARGUMENT = 3
FAILED_PRECONDITION = 9
UNAVAILABLE = 14

REASON_NAMES = {v: k for k, v in zero_pb2.AbortReason.items()}

# The message of a decision answered again (a retry): the decision made earlier.
DECIDED_EARLIER = "decided earlier"

# A decision in the decisions map: a commit is its commit_ts shifted left 3 bits; an
# abort is its AbortReason (1..5) — one int per decision, not an object.
_SHIFT = 3


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns a tablet, as the state machine sees it at this index."""

    group_id: int
    fenced: bool  # in the phase of a move that refuses writes and commits


Ownership = Callable[[str], Owner | None]


class _Fifo:
    """Pairs (slot, value) appended in increasing slot order, popped from the front:
    two arrays of 64-bit ints and a head offset, compacted once half is dead."""

    __slots__ = ("slots", "values", "head")

    def __init__(self) -> None:
        self.slots = array("Q")
        self.values = array("Q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.slots) - self.head

    def append(self, slot: int, value: int) -> None:
        self.slots.append(slot)
        self.values.append(value)

    def pop_below(self, limit: int) -> Iterator[tuple[int, int]]:
        """Remove and yield the pairs whose slot is below `limit`."""
        slots, values = self.slots, self.values
        i, n = self.head, len(slots)
        while i < n and slots[i] < limit:
            yield slots[i], values[i]
            i += 1
        self.head = i
        if i > 4096 and i * 2 > n:
            del slots[:i]
            del values[:i]
            self.head = 0

    def after(self, slot: int) -> Iterator[tuple[int, int]]:
        """The pairs whose slot is above `slot`, in order."""
        start = bisect_right(self.slots, slot, lo=self.head)
        for i in range(start, len(self.slots)):
            yield self.slots[i], self.values[i]


class OracleState:
    """Conflict keys, decisions, safe_ts: the part of ZeroState the oracle owns."""

    __slots__ = ("safe_ts", "last_slot", "purged_below", "_keys", "_key_fifo", "_decisions", "_decided")

    def __init__(self, snap: state_pb2.OracleSnapshot | None = None) -> None:
        self.safe_ts = 0        # start_ts below this are TOO_OLD; keys at or below it are gone
        self.last_slot = 0      # the highest timestamp slot a DecideTxns batch used
        self.purged_below = 0   # decisions with a slot below this were purged
        self._keys: dict[int, int] = {}     # conflict key -> commit_ts of the last commit writing it
        self._key_fifo = _Fifo()            # (commit_ts, key) per key written, in commit order
        self._decisions: dict[int, int] = {}  # start_ts -> encoded decision
        self._decided = _Fifo()             # (slot, start_ts) per decision, in order
        if snap is not None:
            self._load(snap)

    # -- reads ------------------------------------------------------------------------------
    @property
    def conflict_keys(self) -> int:
        return len(self._keys)

    @property
    def decisions(self) -> int:
        return len(self._decisions)

    def status(self, start_ts: int) -> zero_pb2.CommitResponse:
        """The decision of `start_ts`; undecided: commit_ts 0, aborted false; purged:
        code FAILED_PRECONDITION (never a different decision)."""
        d = self._decisions.get(start_ts)
        if d is not None:
            return _response(start_ts, d)
        if start_ts < self.purged_below:
            return _purged(start_ts)
        return zero_pb2.CommitResponse(start_ts=start_ts)

    def commits_after(self, since_ts: int) -> Iterator[zero_pb2.CommitResponse]:
        """Every retained commit with commit_ts > since_ts, in commit_ts order."""
        for slot, start_ts in self._decided.after(since_ts):
            d = self._decisions.get(start_ts)
            if d is not None and d >> _SHIFT == slot:
                yield _response(start_ts, d)

    # -- apply ------------------------------------------------------------------------------
    def decide(self, batch: state_pb2.DecideTxns, owner_of: Ownership) -> list[zero_pb2.CommitResponse]:
        """Apply one DecideTxns: a response per request, in order."""
        first = batch.first_commit_ts
        if first <= self.last_slot:
            msg = (f"timestamp slots from {first} are not above the last applied slot {self.last_slot}: "
                   f"this batch came from a deposed leader; retry")
            return [zero_pb2.CommitResponse(start_ts=t.start_ts, code=UNAVAILABLE, message=msg) for t in batch.txns]
        out = []
        for i, txn in enumerate(batch.txns):
            out.append(self._decide_one(txn, first + i, owner_of))
        if batch.txns:
            self.last_slot = first + len(batch.txns) - 1
        return out

    def _decide_one(self, txn: zero_pb2.CommitRequest, slot: int,
                    owner_of: Ownership) -> zero_pb2.CommitResponse:
        start_ts = txn.start_ts
        refused = check_request(txn, slot)
        if refused is not None:
            return refused
        d = self._decisions.get(start_ts)
        if d is not None:
            again = _response(start_ts, d)
            again.message = DECIDED_EARLIER
            return again
        if start_ts < self.purged_below:
            return _purged(start_ts)
        reason, message = self._abort_reason(txn, owner_of)
        if reason:
            d = reason
        else:
            keys, fifo = self._keys, self._key_fifo
            for k in txn.conflict_keys:
                keys[k] = slot
                fifo.append(slot, k)
            d = slot << _SHIFT
        self._decisions[start_ts] = d
        self._decided.append(slot, start_ts)
        r = _response(start_ts, d)
        if message:
            r.message = message
        return r

    def _abort_reason(self, txn: zero_pb2.CommitRequest, owner_of: Ownership) -> tuple[int, str]:
        if txn.abort:
            return zero_pb2.CLIENT_ABORT, "aborted by the client"
        start_ts = txn.start_ts
        if start_ts < self.safe_ts:
            return zero_pb2.TOO_OLD, f"start_ts {start_ts} is below safe_ts {self.safe_ts}"
        owners = [(w, owner_of(w.predicate)) for w in txn.writes]
        for w, o in owners:
            if o is None:
                return zero_pb2.WRONG_GROUP, f"tablet {w.predicate!r} is not owned by any group (claim it first)"
            if o.group_id != w.group_id:
                return zero_pb2.WRONG_GROUP, (f"tablet {w.predicate!r} is owned by group {o.group_id}, "
                                              f"not group {w.group_id}")
        for w, o in owners:
            if o is not None and o.fenced:
                return zero_pb2.TABLET_MOVING, f"tablet {w.predicate!r} is being moved (fenced)"
        keys = self._keys
        for k in txn.conflict_keys:
            ts = keys.get(k)
            if ts is not None and ts > start_ts:
                return zero_pb2.CONFLICT, f"a transaction committed at {ts} wrote a key this one wrote"
        return 0, ""

    def advance(self, change: state_pb2.AdvanceSafeTs) -> None:
        """Raise safe_ts and drop what it makes unnecessary; lower values change nothing."""
        if change.safe_ts > self.safe_ts:
            self.safe_ts = change.safe_ts
            keys = self._keys
            for ts, k in self._key_fifo.pop_below(self.safe_ts + 1):
                if keys.get(k) == ts:
                    del keys[k]
        below = min(change.purge_below, self.safe_ts)
        if below > self.purged_below:
            self.purged_below = below
            decisions = self._decisions
            for _, start_ts in self._decided.pop_below(below):
                decisions.pop(start_ts, None)

    # -- snapshots --------------------------------------------------------------------------
    def to_proto(self) -> state_pb2.OracleSnapshot:
        snap = state_pb2.OracleSnapshot(safe_ts=self.safe_ts, last_commit_ts=self.last_slot,
                                        purged_below=self.purged_below)
        fifo = self._key_fifo
        keys = self._keys
        live = [(ts, k) for ts, k in zip(fifo.slots[fifo.head:], fifo.values[fifo.head:]) if keys.get(k) == ts]
        snap.keys.extend(k for _, k in live)
        snap.key_commit_ts.extend(ts for ts, _ in live)
        dec = self._decided
        decisions = self._decisions
        for slot, start_ts in zip(dec.slots[dec.head:], dec.values[dec.head:]):
            d = decisions[start_ts]
            snap.start_ts.append(start_ts)
            snap.decided_at.append(slot)
            if d & ((1 << _SHIFT) - 1):
                snap.commit_ts.append(0)
                snap.reason.append(d)
            else:
                snap.commit_ts.append(d >> _SHIFT)
                snap.reason.append(0)
        return snap

    @classmethod
    def from_proto(cls, snap: state_pb2.OracleSnapshot) -> OracleState:
        """The state a snapshot holds; ValueError when its arrays disagree (corrupt)."""
        return cls(snap)

    def _load(self, snap: state_pb2.OracleSnapshot) -> None:
        self.safe_ts, self.last_slot, self.purged_below = snap.safe_ts, snap.last_commit_ts, snap.purged_below
        if len(snap.keys) != len(snap.key_commit_ts):
            raise ValueError("oracle snapshot: keys and key_commit_ts differ in length")
        n = len(snap.start_ts)
        if not (len(snap.commit_ts) == len(snap.reason) == len(snap.decided_at) == n):
            raise ValueError("oracle snapshot: the decision arrays differ in length")
        _check_sorted(snap.key_commit_ts, "key_commit_ts")
        _check_sorted(snap.decided_at, "decided_at")
        for k, ts in zip(snap.keys, snap.key_commit_ts):
            self._keys[k] = ts
            self._key_fifo.append(ts, k)
        for start_ts, commit_ts, reason, slot in zip(snap.start_ts, snap.commit_ts, snap.reason, snap.decided_at):
            if (commit_ts == 0) == (reason == 0) or reason >= 1 << _SHIFT:
                raise ValueError(f"oracle snapshot: decision of {start_ts} is neither a commit nor an abort")
            self._decisions[start_ts] = commit_ts << _SHIFT if commit_ts else reason
            self._decided.append(slot, start_ts)


def check_request(txn: zero_pb2.CommitRequest, slot: int | None = None) -> zero_pb2.CommitResponse | None:
    """The refusal of a malformed request (INVALID_ARGUMENT, nothing decided), or None.
    `slot` is the timestamp it would commit at: start_ts must be below it."""
    start_ts = txn.start_ts
    if start_ts == 0:
        msg = "start_ts 0 is not a timestamp zero hands out"
    elif slot is not None and start_ts >= slot:
        msg = f"start_ts {start_ts} is above every timestamp handed out"
    elif len(txn.conflict_keys) > MAX_CONFLICT_KEYS:
        msg = f"{len(txn.conflict_keys)} conflict keys; at most {MAX_CONFLICT_KEYS:,} per transaction"
    else:
        return None
    return zero_pb2.CommitResponse(start_ts=start_ts, code=INVALID_ARGUMENT, message=msg)


def _response(start_ts: int, d: int) -> zero_pb2.CommitResponse:
    reason = d & ((1 << _SHIFT) - 1)
    if reason:
        return zero_pb2.CommitResponse(start_ts=start_ts, aborted=True, reason=cast(zero_pb2.AbortReason, reason))
    return zero_pb2.CommitResponse(start_ts=start_ts, commit_ts=d >> _SHIFT)


def _purged(start_ts: int) -> zero_pb2.CommitResponse:
    return zero_pb2.CommitResponse(
        start_ts=start_ts, code=FAILED_PRECONDITION,
        message=f"the decision of start_ts {start_ts}, if any, was purged (older than the retention window)")


def _check_sorted(values: Sequence[int], name: str) -> None:
    if any(a > b for a, b in zip(values, values[1:])):
        raise ValueError(f"oracle snapshot: {name} is not in increasing order")
