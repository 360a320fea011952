"""Snapshot files: `<index as 16 hex digits>.snap`, one raftpb.Snapshot each.

Layout: the 32-byte file header of record.py with magic b"RCWALSNP", value = body
length and value2 = CRC-32C of the body, then the body: the protobuf encoding of
raftpb.Snapshot (metadata and data). Written atomically (files.write_file_atomically).
"""

from __future__ import annotations

import os
import re

from google.protobuf.message import DecodeError

from ..errors import CorruptionError
from ..raftpb import Snapshot
from .files import read_file, write_file_atomically
from .record import FILE_HEADER_SIZE, SNAPSHOT_MAGIC, crc32c, decode_file_header, encode_file_header

__all__ = ["SNAP_NAME", "snapshot_name", "write_snapshot", "read_snapshot"]

SNAP_NAME = re.compile(r"^([0-9a-f]{16})\.snap$")


def snapshot_name(index: int) -> str:
    return f"{index:016x}.snap"


def write_snapshot(dirpath: str, snap: Snapshot) -> str:
    """Durably write snap to its file; returns the path."""
    body = snap.SerializeToString()
    name = snapshot_name(snap.metadata.index)
    write_file_atomically(dirpath, name, encode_file_header(SNAPSHOT_MAGIC, len(body), crc32c(body)), body)
    return os.path.join(dirpath, name)


def read_snapshot(path: str, index: int) -> Snapshot:
    """Read and verify the snapshot file for `index`; CorruptionError names the file and
    offset of any damage, StorageError an unsupported version."""
    buf = read_file(path)
    length, crc = decode_file_header(buf, path, SNAPSHOT_MAGIC)
    body = buf[FILE_HEADER_SIZE:]
    if len(body) != length:
        raise CorruptionError(
            f"{path}: offset {FILE_HEADER_SIZE}: body is {len(body)} bytes, header says {length}"
        )
    if crc32c(body) != crc:
        raise CorruptionError(f"{path}: offset {FILE_HEADER_SIZE}: snapshot body checksum mismatch")
    try:
        snap: Snapshot = Snapshot.FromString(body)
    except DecodeError as e:
        raise CorruptionError(f"{path}: offset {FILE_HEADER_SIZE}: undecodable snapshot ({e})") from e
    if snap.metadata.index != index:
        raise CorruptionError(
            f"{path}: offset {FILE_HEADER_SIZE}: holds snapshot index {snap.metadata.index}, "
            f"its name says {index}"
        )
    return snap
