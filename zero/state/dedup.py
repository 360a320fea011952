"""Proposal dedup: a retried proposal is applied once (SPEC semantics 7).

A proposal's non-empty key, once applied, maps to its first result; applying the key
again returns that result and changes nothing. Only successful applies are recorded: a
refused proposal changed nothing, and its retry is evaluated afresh. The most recent
DEDUP_RETENTION keys are kept, evicted by count so every replica forgets the same ones;
they travel in the snapshot in apply order, so a retry after a leader change, a restart
or a snapshot install is still recognised.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

from zero.pb import state_pb2
from zero.state.tables import copy

__all__ = ["Dedup", "DEDUP_RETENTION"]

DEDUP_RETENTION = 10_000  # keyed proposals remembered; a retry older than this re-applies


class Dedup:
    """Key -> (index, first result), oldest first. DedupRecord messages are built only
    for snapshots: apply is the hot path."""

    __slots__ = ("_seen",)

    def __init__(self, records: Iterable[state_pb2.DedupRecord] = ()) -> None:
        self._seen: collections.OrderedDict[str, tuple[int, state_pb2.ProposalResult]] = collections.OrderedDict(
            (r.key, (r.index, copy(r.result))) for r in records)

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def result(self, key: str) -> state_pb2.ProposalResult:
        """A copy of the first result of `key` (which must have been recorded)."""
        return copy(self._seen[key][1])

    def record(self, key: str, index: int, result: state_pb2.ProposalResult) -> None:
        """`key` was applied at `index` with `result` (kept as is: the caller's is a copy)."""
        seen = self._seen
        seen[key] = (index, result)
        if len(seen) > DEDUP_RETENTION:
            seen.popitem(last=False)

    def records(self) -> Iterator[state_pb2.DedupRecord]:
        """The snapshot's records, oldest first."""
        return (state_pb2.DedupRecord(key=k, index=i, result=r) for k, (i, r) in self._seen.items())
