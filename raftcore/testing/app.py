"""RecordingStateMachine: the tiny application each simulated node runs.

It records every entry it applies as an `AppliedEntry(index, term, type, data)`, so two
nodes' applied sequences can be compared entry by entry, and its snapshot is that whole
sequence (small in a simulation), so a node restored from a snapshot still carries the
full history. Invariant: `records[k].index == k + 1` — entries are applied in order with
no gap, starting at index 1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["AppliedEntry", "RecordingStateMachine"]

_HEADER = struct.Struct(">QQBI")


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """One applied entry; `type` is the raftpb.EntryType value."""

    index: int
    term: int
    type: int
    data: bytes


class RecordingStateMachine:
    """An append-only list of applied entries with a snapshot encoding."""

    __slots__ = ("records",)

    def __init__(self, records: list[AppliedEntry] | None = None) -> None:
        self.records: list[AppliedEntry] = records if records is not None else []

    @property
    def applied(self) -> int:
        """The index of the last applied entry (0 when nothing is applied)."""
        return self.records[-1].index if self.records else 0

    def apply(self, index: int, term: int, type_: int, data: bytes) -> None:
        if index != self.applied + 1:
            raise AssertionError(
                f"entry {index} applied out of order: the state machine is at {self.applied}"
            )
        self.records.append(AppliedEntry(index, term, type_, data))

    def normal_data(self) -> list[bytes]:
        """The data of the applied normal entries that carry data (the proposals)."""
        return [r.data for r in self.records if r.type == 0 and r.data]

    def encode(self) -> bytes:
        """The snapshot of this state machine: every applied entry, in order."""
        parts = []
        for r in self.records:
            parts.append(_HEADER.pack(r.index, r.term, r.type, len(r.data)))
            parts.append(r.data)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> RecordingStateMachine:
        records = []
        pos = 0
        while pos < len(data):
            index, term, type_, n = _HEADER.unpack_from(data, pos)
            pos += _HEADER.size
            records.append(AppliedEntry(index, term, type_, data[pos : pos + n]))
            pos += n
        return cls(records)
