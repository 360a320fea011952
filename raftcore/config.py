"""Config: validated, keyword-only parameters of a Raft node."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ConfigError
from .read_only import ReadOnlyOption
from .storage import Storage

__all__ = ["Config", "Logger"]


class Logger(Protocol):
    """What raftcore logs through: logging.Logger and structlog loggers both fit."""

    def debug(self, msg: str, /) -> Any: ...
    def info(self, msg: str, /) -> Any: ...
    def warning(self, msg: str, /) -> Any: ...
    def error(self, msg: str, /) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    # The node's id; never 0.
    id: int
    # The stable log and state the node reads through; written by the application.
    storage: Storage
    # Ticks a follower waits without hearing from a leader before campaigning; the
    # actual timeout is randomized in [election_tick, 2 * election_tick).
    election_tick: int = 10
    # Ticks between a leader's heartbeats. Must be less than election_tick.
    heartbeat_tick: int = 1
    # The last index the application has applied (on restart).
    applied: int = 0
    # Max bytes of entries in one MsgApp (at least one entry is always sent).
    max_size_per_msg: int = 1 << 20
    # Max bytes of committed entries per Ready; 0 means max_size_per_msg.
    max_committed_size_per_ready: int = 0
    # Max bytes of uncommitted entry payloads on a leader; 0 means unlimited.
    max_uncommitted_entries_size: int = 0
    # Max MsgApps in flight per follower (optimistic replication window).
    max_inflight_msgs: int = 256
    # Max payload bytes in flight per follower; 0 means unlimited.
    max_inflight_bytes: int = 0
    # Leader steps down when it has not heard from a quorum for an election timeout.
    check_quorum: bool = True
    # Candidates first check they could win (PreVote, thesis §9.6).
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    # Followers drop proposals instead of forwarding them to the leader.
    disable_proposal_forwarding: bool = False
    # A leader that applies its own removal (or demotion) steps down at once. Off, as
    # etcd/raft's StepDownOnRemoval: it keeps leading — heartbeating and committing
    # with the new configuration's voters, taking no proposals — until the application
    # stops it, so the others learn the commit of that very change (stepping down at
    # once can leave a follower in the old joint configuration, needing the removed
    # node's vote, with no one left to tell it the change was committed).
    step_down_on_removal: bool = False
    # Randomness source (election timeouts). One is made when None.
    rng: random.Random | None = None
    logger: Logger | None = None

    def __post_init__(self) -> None:
        def need(cond: bool, field: str, why: str) -> None:
            if not cond:
                raise ConfigError(f"Config.{field}: {why}")

        for name in ("id", "election_tick", "heartbeat_tick", "applied", "max_size_per_msg",
                     "max_committed_size_per_ready", "max_uncommitted_entries_size",
                     "max_inflight_msgs", "max_inflight_bytes"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool), name, f"must be an int, got {type(v).__name__}")
        need(self.id > 0, "id", "must be a positive integer (0 means 'no node')")
        need(self.id < (1 << 64), "id", "must fit in 64 bits")
        need(self.heartbeat_tick > 0, "heartbeat_tick", "must be greater than 0")
        need(self.election_tick > self.heartbeat_tick, "election_tick",
             f"must be greater than heartbeat_tick ({self.heartbeat_tick})")
        need(self.storage is not None, "storage", "cannot be None")
        for name in ("initial_state", "entries", "term", "first_index", "last_index", "snapshot"):
            need(callable(getattr(self.storage, name, None)), "storage", f"has no {name}() method")
        need(self.applied >= 0, "applied", "must not be negative")
        need(self.max_size_per_msg >= 0, "max_size_per_msg", "must not be negative")
        need(self.max_committed_size_per_ready >= 0, "max_committed_size_per_ready", "must not be negative")
        need(self.max_uncommitted_entries_size >= 0, "max_uncommitted_entries_size", "must not be negative")
        need(self.max_inflight_msgs > 0, "max_inflight_msgs", "must be greater than 0")
        need(self.max_inflight_bytes >= 0, "max_inflight_bytes", "must not be negative")
        need(self.max_inflight_bytes == 0 or self.max_inflight_bytes >= self.max_size_per_msg,
             "max_inflight_bytes", f"must be 0 (unlimited) or >= max_size_per_msg ({self.max_size_per_msg})")
        need(isinstance(self.read_only_option, ReadOnlyOption), "read_only_option", "must be a ReadOnlyOption")
        need(self.read_only_option != ReadOnlyOption.LEASE_BASED or self.check_quorum, "read_only_option",
             "LEASE_BASED requires check_quorum=True (the lease is CheckQuorum's)")
        need(self.rng is None or isinstance(self.rng, random.Random), "rng", "must be a random.Random or None")
        if self.logger is not None:
            for name in ("debug", "info", "warning", "error"):
                need(callable(getattr(self.logger, name, None)), "logger", f"has no {name}() method")
