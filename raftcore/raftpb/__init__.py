"""raftpb: Raft's wire and disk messages, generated from proto/raftcore/raftpb/raft.proto.

Enum values are re-exported at module level (raftpb.MsgApp, raftpb.EntryNormal, ...).
"""

from .raft_pb2 import *  # noqa: F401,F403
from .raft_pb2 import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

__all__ = [
    "ConfChange", "ConfChangeSingle", "ConfChangeTransition", "ConfChangeType",
    "ConfChangeV2", "ConfState", "Entry", "EntryType", "HardState", "Message",
    "MessageType", "Snapshot", "SnapshotMetadata",
]
# Enum values as names, e.g. raftpb.MsgApp.
for _enum in (EntryType, MessageType, ConfChangeTransition, ConfChangeType):
    for _name, _value in _enum.items():
        globals()[_name] = _value
        __all__.append(_name)
del _enum, _name, _value
