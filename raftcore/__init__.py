"""raftcore: a Raft library in the style of etcd-io/raft.

How the layers stack (bottom to top):
  raftpb/      generated protobuf messages: Entry, Message, HardState, ConfState, Snapshot
  storage      the read-only Storage interface the core reads the stable log through,
               and MemoryStorage
  quorum/, tracker/, confchange/
               pure helpers: majority/joint quorum math, per-peer progress and
               inflight windows, configuration-change validation
  log_unstable, log
               the not-yet-persisted tail of the log, and the log as the core sees it
  read_only    ReadIndex bookkeeping
  raft         the state machine: one step function per role, ticks, no I/O
  rawnode      the application-facing API: step/tick/propose in, Ready out, advance()
  node         the asyncio wrapper (the only concurrent module of the package)
  wal/         durable storage: write-ahead log + snapshot files (does I/O)
  testing/     deterministic cluster simulator for tests (public, like trio.testing)
"""

from . import raftpb
from .errors import (
    CompactedError,
    ConfChangeError,
    ConfigError,
    CorruptionError,
    ProposalDroppedError,
    RaftError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    StepLocalMsgError,
    StepPeerNotFoundError,
    StorageError,
    UnavailableError,
)
from .config import Config, Logger
from .node import Node, NodeStoppedError
from .rawnode import RawNode
from .read_only import ReadOnlyOption
from .ready import (
    ProgressStatus,
    ReadState,
    Ready,
    SnapshotStatus,
    SoftState,
    StateType,
    Status,
)
from .storage import MemoryStorage, Storage

__all__ = [
    "raftpb",
    "Config",
    "Logger",
    "RawNode",
    "Node",
    "NodeStoppedError",
    "Ready",
    "SoftState",
    "ReadState",
    "Status",
    "ProgressStatus",
    "StateType",
    "SnapshotStatus",
    "ReadOnlyOption",
    "Storage",
    "MemoryStorage",
    "RaftError",
    "ConfigError",
    "CompactedError",
    "UnavailableError",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "ProposalDroppedError",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
    "ConfChangeError",
    "StorageError",
    "CorruptionError",
]
