"""The values RawNode hands to the application: Ready, SoftState, ReadState, Status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .raftpb import Entry, HardState, Message, Snapshot

__all__ = ["StateType", "SnapshotStatus", "SoftState", "ReadState", "Ready", "Status",
           "ProgressStatus", "is_empty_hard_state", "must_sync"]


class StateType(enum.Enum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class SnapshotStatus(enum.Enum):
    FINISH = 1
    FAILURE = 2


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state useful for logging and for the application; not persisted."""

    lead: int
    raft_state: StateType


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to a read_index(request_ctx): reads may be served once the
    application has applied up to `index`."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the application must do, in order: persist `snapshot`, `entries` and
    `hard_state` (fdatasync when `must_sync`); send `messages`; apply
    `committed_entries` (apply_conf_change for conf changes); then call advance(rd).

    `messages` never depend on this Ready's unpersisted state: responses that do (vote
    and append acks, thesis §3.8) are held inside raftcore and released after
    advance(). So a leader may send its MsgApps while its own write is in flight
    (thesis §10.2.1)."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    must_sync: bool = False

    def contains_updates(self) -> bool:
        return bool(self.soft_state is not None or self.hard_state is not None
                    or self.entries or self.snapshot is not None or self.committed_entries
                    or self.messages or self.read_states)


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    match: int
    next: int
    state: str
    is_learner: bool
    recent_active: bool
    paused: bool
    inflight: int


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    lead: int
    raft_state: StateType
    applied: int
    lead_transferee: int
    # Only on the leader: every peer's replication progress.
    progress: dict[int, ProgressStatus]
    voters: tuple[int, ...]
    voters_outgoing: tuple[int, ...]
    learners: tuple[int, ...]


def is_empty_hard_state(hs: HardState) -> bool:
    return hs.term == 0 and hs.vote == 0 and hs.commit == 0


def must_sync(st: HardState, prev: HardState, n_entries: int) -> bool:
    """Term, vote and log entries must be durable before responding (§5, Figure 2)."""
    return n_entries != 0 or st.vote != prev.vote or st.term != prev.term
