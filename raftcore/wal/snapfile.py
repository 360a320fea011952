"""Snapshot files: `<index as 16 hex digits>.snap`, one raftpb.Snapshot each.

Layout: the 32-byte file header of record.py with magic b"RCWALSNP", value = body
length and value2 = CRC-32C of the body, then the body. Version 2 (written): the
protobuf encoding of walpb.SnapshotFile — the raftpb.Snapshot plus the WAL position
(segment, offset) where the record naming it starts. Version 1 (read only): the bare
raftpb.Snapshot. Written atomically (files.write_file_atomically).

The WAL position is what lets recovery tell a file orphaned by a crash (its record torn
or never written: the log ends exactly there) from a WAL that lost records it had synced
(the log ends before it; docs/DESIGN.md ("Durable storage"), recovery).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ..errors import CorruptionError
from ..raftpb import Snapshot
from .files import read_file, write_file_atomically
from .record import FILE_HEADER_SIZE, SNAPSHOT_MAGIC, crc32c, decode_file_header, encode_file_header
from .walpb import SNAPSHOT_FILE_SNAPSHOT_TAG, SnapshotFile, varint

__all__ = ["SNAP_NAME", "SnapshotFileContents", "snapshot_name", "encode_snapshot_body",
           "write_snapshot", "read_snapshot"]

SNAP_NAME = re.compile(r"^([0-9a-f]{16})\.snap$")


def snapshot_name(index: int) -> str:
    return f"{index:016x}.snap"


@dataclass(frozen=True, slots=True)
class SnapshotFileContents:
    snapshot: Snapshot
    # (segment sequence number, byte offset) where the WAL record naming this snapshot
    # starts; None for a version-1 file, which did not record it.
    wal_pos: tuple[int, int] | None


def encode_snapshot_body(snap: Snapshot, wal_pos: tuple[int, int]) -> bytes:
    """SnapshotFile(snapshot=snap, wal_segment=..., wal_offset=...).SerializeToString(),
    byte for byte, without copying the snapshot into a wrapper message: its field by
    hand, then the position fields."""
    s = snap.SerializeToString()
    tail: bytes = SnapshotFile(wal_segment=wal_pos[0], wal_offset=wal_pos[1]).SerializeToString()
    return b"".join((bytes([SNAPSHOT_FILE_SNAPSHOT_TAG]), varint(len(s)), s, tail))


def write_snapshot(dirpath: str, snap: Snapshot, wal_pos: tuple[int, int]) -> str:
    """Durably write snap to its file, recording the WAL position (segment, offset) at
    which the record naming it will start; returns the path. The caller has synced
    everything the WAL holds before that position."""
    body = encode_snapshot_body(snap, wal_pos)
    name = snapshot_name(snap.metadata.index)
    write_file_atomically(dirpath, name, encode_file_header(SNAPSHOT_MAGIC, len(body), crc32c(body)), body)
    return os.path.join(dirpath, name)


def read_snapshot(path: str, index: int) -> SnapshotFileContents:
    """Read and verify the snapshot file for `index`; CorruptionError names the file and
    offset of any damage, StorageError an unsupported version."""
    buf = read_file(path)
    version, length, crc = decode_file_header(buf, path, SNAPSHOT_MAGIC)
    body = buf[FILE_HEADER_SIZE:]
    if len(body) != length:
        raise CorruptionError(
            f"{path}: offset {FILE_HEADER_SIZE}: body is {len(body)} bytes, header says {length}"
        )
    if crc32c(body) != crc:
        raise CorruptionError(f"{path}: offset {FILE_HEADER_SIZE}: snapshot body checksum mismatch")
    wal_pos: tuple[int, int] | None = None
    try:
        if version == 1:
            snap: Snapshot = Snapshot.FromString(body)
        else:
            sf = SnapshotFile.FromString(body)
            snap, wal_pos = sf.snapshot, (sf.wal_segment, sf.wal_offset)
    except DecodeError as e:
        raise CorruptionError(f"{path}: offset {FILE_HEADER_SIZE}: undecodable snapshot ({e})") from e
    if snap.metadata.index != index:
        raise CorruptionError(
            f"{path}: offset {FILE_HEADER_SIZE}: holds snapshot index {snap.metadata.index}, "
            f"its name says {index}"
        )
    return SnapshotFileContents(snap, wal_pos)
