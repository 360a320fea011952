"""raftcore's exception hierarchy.

Every error the library raises derives from RaftError, so an application can catch the
library's failures in one place and map them (zero maps them to gRPC status codes).
"""

from __future__ import annotations

__all__ = [
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


class RaftError(Exception):
    """Base class of every raftcore error."""


class ConfigError(RaftError, ValueError):
    """A Config field is invalid; the message names the field and why."""


class CompactedError(RaftError):
    """The requested index is older than the storage's first index (it was compacted)."""


class UnavailableError(RaftError):
    """The requested index is beyond the storage's last index."""


class SnapshotOutOfDateError(RaftError):
    """A snapshot older than the storage's current one was offered."""


class SnapshotTemporarilyUnavailableError(RaftError):
    """The snapshot is being built; the leader retries later."""


class ProposalDroppedError(RaftError):
    """A proposal could not be accepted: no leader, a leader transfer, or the
    uncommitted-size limit. The caller may retry later."""


class StepLocalMsgError(RaftError):
    """RawNode.step was given a message type that only raftcore itself generates."""


class StepPeerNotFoundError(RaftError):
    """A response came from a peer that is not in the configuration."""


class ConfChangeError(RaftError, ValueError):
    """A configuration change is invalid for the current configuration."""


class StorageError(RaftError):
    """Durable storage failed (I/O error, locked directory, unsupported format)."""


class CorruptionError(StorageError):
    """A file on disk is damaged; the message names the file and the byte offset."""
