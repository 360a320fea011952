"""Shared helpers of the raftcore.wal tests: a model of storage operations applied alike
to DiskStorage and MemoryStorage, state comparison, and a deterministic op generator
(also used by the crash child process)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Union

from raftcore import MemoryStorage
from raftcore.errors import RaftError
from raftcore.raftpb import ConfState, Entry, HardState, Snapshot
from raftcore.wal import DiskStorage

AnyStorage = Union[DiskStorage, MemoryStorage]


class ListLogger:
    """A DiskStorage logger that keeps the warnings (what recovery repaired or refused)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def info(self, msg: str) -> None:
        pass


@dataclass(frozen=True)
class Save:
    hard_state: HardState | None
    entries: list[Entry]
    snapshot: Snapshot | None = None


@dataclass(frozen=True)
class CreateSnapshot:
    index: int
    conf_state: ConfState
    data: bytes


@dataclass(frozen=True)
class Compact:
    index: int


@dataclass(frozen=True)
class Reopen:
    pass


Op = Union[Save, CreateSnapshot, Compact, Reopen]


def apply(st: AnyStorage, op: Op) -> None:
    """Apply op to a DiskStorage, or its equivalent to a MemoryStorage model."""
    if isinstance(op, Save):
        if isinstance(st, DiskStorage):
            st.save(op.hard_state, op.entries, op.snapshot)
        else:
            if op.snapshot is not None:
                st.apply_snapshot(op.snapshot)
            st.append(op.entries)
            if op.hard_state is not None:
                st.set_hard_state(op.hard_state)
    elif isinstance(op, CreateSnapshot):
        st.create_snapshot(op.index, op.conf_state, op.data)
    elif isinstance(op, Compact):
        st.compact(op.index)


def state(st: AnyStorage) -> tuple[Any, ...]:
    """Everything a Storage shows, as comparable values."""
    hs, cs = st.initial_state()
    first, last = st.first_index(), st.last_index()
    ents = st.entries(first, last + 1) if last >= first else []
    snap = st.snapshot()
    return (
        hs.SerializeToString(deterministic=True),
        cs.SerializeToString(deterministic=True),
        snap.SerializeToString(deterministic=True),
        first,
        last,
        st.term(first - 1),
        [(e.index, e.term, e.type, e.data) for e in ents],
    )


def copy_model(ms: MemoryStorage) -> MemoryStorage:
    return ms.copy()


@dataclass
class OpGen:
    """Random valid operations for a storage's current state: mostly appends, some
    conflicting rewrites (a new leader's term), snapshots, compactions, snapshot installs.
    Only reads the storage, so the same seed yields the same ops on any storage with
    the same state."""

    rng: random.Random
    max_batch: int = 20
    max_data: int = 40
    weights: dict[str, int] = field(
        default_factory=lambda: {"append": 70, "truncate": 10, "hs": 5, "create": 6, "compact": 6, "install": 3}
    )

    def next(self, st: AnyStorage) -> Op:
        r = self.rng
        hs0, _ = st.initial_state()
        last, first = st.last_index(), st.first_index()
        offset = first - 1
        snap_i = st.snapshot().metadata.index
        term = max(hs0.term, st.term(last), 1)
        kinds, w = zip(*self.weights.items())
        kind = r.choices(kinds, w)[0]
        if kind == "create" and max(snap_i + 1, offset) <= last:
            i = r.randint(max(snap_i + 1, offset), last)
            return CreateSnapshot(i, ConfState(voters=[1, 2, 3][: r.randint(1, 3)]), r.randbytes(r.randint(0, 64)))
        if kind == "compact" and offset + 1 <= min(last, max(snap_i, offset + 1)):
            return Compact(r.randint(offset + 1, min(last, max(snap_i, offset + 1))))
        if kind == "install":
            s = Snapshot(data=r.randbytes(r.randint(0, 64)))
            s.metadata.index = max(last, snap_i) + r.randint(1, 10)
            s.metadata.term = term
            s.metadata.conf_state.voters.extend([1, 2])
            return Save(HardState(term=term, commit=s.metadata.index), [], s)
        if kind == "hs":
            return Save(HardState(term=term + r.randint(0, 1), vote=r.randint(0, 3), commit=r.randint(0, last)), [])
        if kind == "truncate" and last > offset:
            start = r.randint(offset + 1, last + 1)
            term += 1
        else:
            start = last + 1
        n = r.randint(1, self.max_batch)
        ents = [Entry(index=start + k, term=term, data=r.randbytes(r.randint(0, self.max_data))) for k in range(n)]
        hs = HardState(term=term, vote=r.randint(0, 3), commit=r.randint(0, start + n - 1)) if r.random() < 0.7 else None
        return Save(hs, ents)


def expect_same(a: AnyStorage, b: AnyStorage) -> None:
    assert state(a) == state(b)


__all__ = [
    "Save", "CreateSnapshot", "Compact", "Reopen", "Op", "apply", "state", "copy_model",
    "OpGen", "expect_same", "RaftError",
]
