"""Byte-level framing shared by WAL segments and snapshot files (docs/DESIGN.md ("Durable storage")).

Every file starts with a 32-byte header, little-endian:

    0  magic    8 bytes   b"RCWALSEG" (segment) or b"RCWALSNP" (snapshot)
    8  version  u16       FORMAT_VERSION when written; MIN_FORMAT_VERSION..FORMAT_VERSION read
    10 flags    u16       0
    12 reserved u32       0
    16 value    u64       segment: sequence number; snapshot: body length
    24 value2   u32       segment: 0; snapshot: CRC-32C of the body
    28 crc      u32       CRC-32C of bytes 0..28

This layout is frozen across versions, so a newer file is recognised as such (valid
checksum, unknown version) rather than as damage. Version 2 changed only the body of
snapshot files (snapfile.py); segments of versions 1 and 2 are identical.

A segment's body is a sequence of records, each a 16-byte header then the payload:

    0  length   u32       payload length
    4  type     u8        RecordType
    5  reserved 3 bytes   0
    8  crc      u32       CRC-32C of the payload
    12 hcrc     u32       CRC-32C of bytes 0..12 of this header

The header has its own checksum so that a damaged length is never trusted: without it
a flipped length bit could make a record in the middle of a file look like a torn tail.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

import google_crc32c

from ..errors import CorruptionError, StorageError

__all__ = [
    "FORMAT_VERSION",
    "MIN_FORMAT_VERSION",
    "SEGMENT_MAGIC",
    "SNAPSHOT_MAGIC",
    "FILE_HEADER_SIZE",
    "RECORD_HEADER_SIZE",
    "RecordType",
    "Damage",
    "crc32c",
    "encode_file_header",
    "decode_file_header",
    "record_header",
    "scan_records",
    "valid_record_after",
]

FORMAT_VERSION = 2  # written; version 1 files (the first release) are still read
MIN_FORMAT_VERSION = 1
SEGMENT_MAGIC = b"RCWALSEG"
SNAPSHOT_MAGIC = b"RCWALSNP"

_FILE_HEADER = struct.Struct("<8sHHIQI")  # without the trailing crc
_CRC = struct.Struct("<I")
FILE_HEADER_SIZE = _FILE_HEADER.size + _CRC.size  # 32

_RECORD_HEAD = struct.Struct("<IB3xI")  # length, type, payload crc; then hcrc
_RECORD_FULL = struct.Struct("<IB3xII")
RECORD_HEADER_SIZE = _RECORD_FULL.size  # 16

crc32c = google_crc32c.value


class RecordType(enum.IntEnum):
    SAVE = 1  # walpb.SaveRecord: one save() call (snapshot reset, entries, hard state)
    CREATE_SNAPSHOT = 2  # raftpb.SnapshotMetadata: create_snapshot()
    COMPACT = 3  # walpb.CompactRecord: compact()
    CHECKPOINT = 4  # walpb.Checkpoint: first record of every segment


_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
# A valid record header has a known type byte followed by three zero bytes; the torn-tail
# check looks for such headers after a damaged record (see valid_record_after).
_HEADER_CANDIDATE = re.compile(
    b"(?=[" + b"".join(bytes([t]) for t in sorted(_KNOWN_TYPES)) + b"]\x00\x00\x00)"
)


def encode_file_header(magic: bytes, value: int, value2: int = 0) -> bytes:
    head = _FILE_HEADER.pack(magic, FORMAT_VERSION, 0, 0, value, value2)
    return head + _CRC.pack(crc32c(head))


def decode_file_header(buf: bytes, path: str, magic: bytes) -> tuple[int, int, int]:
    """(version, value, value2) of a file header; raises CorruptionError for damage and
    StorageError for a well-formed header of an unsupported version."""
    if len(buf) < FILE_HEADER_SIZE:
        raise CorruptionError(
            f"{path}: offset 0: file header truncated ({len(buf)} of {FILE_HEADER_SIZE} bytes)"
        )
    got_magic, version, flags, reserved, value, value2 = _FILE_HEADER.unpack_from(buf, 0)
    (crc,) = _CRC.unpack_from(buf, _FILE_HEADER.size)
    crc_ok = crc == crc32c(buf[: _FILE_HEADER.size])
    if got_magic != magic:
        raise CorruptionError(
            f"{path}: offset 0: bad magic {got_magic!r}, expected {magic!r}"
        )
    if not MIN_FORMAT_VERSION <= version <= FORMAT_VERSION:
        if crc_ok:
            raise StorageError(
                f"{path}: unsupported format version {version} (this raftcore reads versions "
                f"{MIN_FORMAT_VERSION} to {FORMAT_VERSION}); written by a newer raftcore?"
            )
        raise CorruptionError(
            f"{path}: offset 8: header checksum mismatch and unknown format version {version}"
        )
    if not crc_ok:
        raise CorruptionError(f"{path}: offset {_FILE_HEADER.size}: file header checksum mismatch")
    if flags != 0 or reserved != 0:
        raise CorruptionError(f"{path}: offset 10: unknown header flags {flags:#x}/{reserved:#x}")
    return version, value, value2


def record_header(rtype: int, payload: bytes) -> bytes:
    head = _RECORD_HEAD.pack(len(payload), rtype, crc32c(payload))
    return head + _CRC.pack(crc32c(head))


@dataclass(frozen=True, slots=True)
class Damage:
    """The first record of a file that could not be read: where and why."""

    offset: int
    reason: str


def _check_record(buf: bytes, off: int) -> tuple[int, int, str]:
    """(type, end offset, "") of the record at off, or (0, 0, reason) if it is damaged."""
    size = len(buf)
    if size - off < RECORD_HEADER_SIZE:
        return 0, 0, f"record header truncated ({size - off} of {RECORD_HEADER_SIZE} bytes)"
    length, rtype, pcrc, hcrc = _RECORD_FULL.unpack_from(buf, off)
    if hcrc != crc32c(buf[off : off + 12]):
        return 0, 0, "record header checksum mismatch"
    end = off + RECORD_HEADER_SIZE + length
    if end > size:
        return 0, 0, f"record of {length} bytes runs past the end of the file ({size} bytes)"
    if pcrc != crc32c(buf[off + RECORD_HEADER_SIZE : end]):
        return 0, 0, "record checksum mismatch"
    return rtype, end, ""


def scan_records(buf: bytes, start: int) -> tuple[list[tuple[int, int, bytes]], Damage | None]:
    """The intact records of buf from `start`: [(offset, type, payload)], and the first
    damaged one (None if the records end exactly at the end of buf)."""
    out: list[tuple[int, int, bytes]] = []
    off, size = start, len(buf)
    unpack, hsize = _RECORD_FULL.unpack_from, RECORD_HEADER_SIZE
    while off < size:
        # Fast path inline; _check_record names the damage when this fails.
        if size - off >= hsize:
            length, rtype, pcrc, hcrc = unpack(buf, off)
            end = off + hsize + length
            if (
                end <= size
                and hcrc == crc32c(buf[off : off + 12])
                and pcrc == crc32c(payload := buf[off + hsize : end])
            ):
                out.append((off, rtype, payload))
                off = end
                continue
        return out, Damage(off, _check_record(buf, off)[2])
    return out, None


def valid_record_after(buf: bytes, damaged: int) -> int | None:
    """The offset of an intact record (known type, both checksums good) starting
    anywhere after `damaged`, or None. A damaged record with an intact one after it is
    corruption, not a torn write: a torn write only ever loses the end of a file."""
    for m in _HEADER_CANDIDATE.finditer(buf, damaged + 1):
        off = m.start() - 4
        if off <= damaged:
            continue
        rtype, _, reason = _check_record(buf, off)
        if not reason and rtype in _KNOWN_TYPES:
            return off
    return None
