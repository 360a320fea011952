"""The protobuf messages of WAL record payloads (package `raftcore.wal`).

They are built at import time from a FileDescriptorProto rather than generated from a
.proto file, so the WAL's on-disk schema lives next to the code that writes it and does
not touch proto/. Equivalent .proto text (docs/DESIGN.md ("Durable storage") is the reference):

    syntax = "proto3";
    package raftcore.wal;
    import "raftcore/raftpb/raft.proto";

    // One DiskStorage.save() call: one Raft Ready's durable part.
    message SaveRecord {
      raftpb.SnapshotMetadata snapshot = 1;  // present: the log was reset to it
      raftpb.HardState hard_state = 2;       // present: the new hard state
      repeated raftpb.Entry entries = 3;     // appended; may overwrite a suffix
    }
    // The state at the start of a segment, so older segments can be deleted.
    message Checkpoint {
      raftpb.HardState hard_state = 1;
      raftpb.SnapshotMetadata snapshot = 2;
      uint64 offset_index = 3;  // the dummy entry (compaction point)
      uint64 offset_term = 4;
      uint64 last_index = 5;
      uint64 last_term = 6;
    }
    message CompactRecord { uint64 index = 1; uint64 term = 2; }
    // The body of a snapshot file of format version 2 (version 1: a bare raftpb.Snapshot).
    message SnapshotFile {
      raftpb.Snapshot snapshot = 1;
      // Where the WAL record naming this snapshot starts: the open segment's sequence
      // number and its length when the file was written. Everything before it was
      // synced first, so a WAL that ends before this point lost synced records.
      uint64 wal_segment = 2;
      uint64 wal_offset = 3;
    }

Field numbers are part of the format; never renumber them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..raftpb import raft_pb2

__all__ = [
    "SaveRecord", "Checkpoint", "CompactRecord", "SnapshotFile", "SAVE_ENTRIES_TAG",
    "SAVE_SNAPSHOT_TAG", "SAVE_HARD_STATE_TAG", "SNAPSHOT_FILE_SNAPSHOT_TAG", "varint",
]

# The wire tag of SaveRecord.entries (field 3, wire type 2 = length-delimited); the
# writer encodes entries by hand with it (the hot path, see storage.encode_save).
SAVE_ENTRIES_TAG = 0x1A
SAVE_SNAPSHOT_TAG = 0x0A
SAVE_HARD_STATE_TAG = 0x12
# SnapshotFile.snapshot (field 1, length-delimited): snapfile.py writes it by hand, so
# the snapshot's data is not copied into a wrapper message.
SNAPSHOT_FILE_SNAPSHOT_TAG = 0x0A

_FILE = "raftcore/wal/walpb.proto"


def varint(n: int) -> bytes:
    """The protobuf base-128 varint encoding of a non-negative n."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _build() -> tuple[Any, Any, Any, Any]:
    pool = descriptor_pool.Default()
    try:
        fd = pool.FindFileByName(_FILE)
    except KeyError:
        f = descriptor_pb2.FileDescriptorProto(
            name=_FILE, package="raftcore.wal", syntax="proto3"
        )
        f.dependency.append(raft_pb2.DESCRIPTOR.name)
        T = descriptor_pb2.FieldDescriptorProto
        opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED

        def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
            m = f.message_type.add(name=name)
            for fname, num, label, ftype, tname in fields:
                fld = m.field.add(name=fname, number=num, label=label, type=ftype)
                if tname:
                    fld.type_name = tname

        MSG, U64 = T.TYPE_MESSAGE, T.TYPE_UINT64
        msg("SaveRecord", [
            ("snapshot", 1, opt, MSG, ".raftpb.SnapshotMetadata"),
            ("hard_state", 2, opt, MSG, ".raftpb.HardState"),
            ("entries", 3, rep, MSG, ".raftpb.Entry"),
        ])
        msg("Checkpoint", [
            ("hard_state", 1, opt, MSG, ".raftpb.HardState"),
            ("snapshot", 2, opt, MSG, ".raftpb.SnapshotMetadata"),
            ("offset_index", 3, opt, U64, ""),
            ("offset_term", 4, opt, U64, ""),
            ("last_index", 5, opt, U64, ""),
            ("last_term", 6, opt, U64, ""),
        ])
        msg("CompactRecord", [
            ("index", 1, opt, U64, ""),
            ("term", 2, opt, U64, ""),
        ])
        msg("SnapshotFile", [
            ("snapshot", 1, opt, MSG, ".raftpb.Snapshot"),
            ("wal_segment", 2, opt, U64, ""),
            ("wal_offset", 3, opt, U64, ""),
        ])
        pool.Add(f)
        fd = pool.FindFileByName(_FILE)
    get = message_factory.GetMessageClass
    return (
        get(fd.message_types_by_name["SaveRecord"]),
        get(fd.message_types_by_name["Checkpoint"]),
        get(fd.message_types_by_name["CompactRecord"]),
        get(fd.message_types_by_name["SnapshotFile"]),
    )


SaveRecord, Checkpoint, CompactRecord, SnapshotFile = _build()
