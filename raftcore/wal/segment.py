"""WAL segment files: `<sequence number as 16 hex digits>.wal`.

A segment is the 32-byte file header of record.py (magic b"RCWALSEG", value = its
sequence number) followed by records, the first of which is always a CHECKPOINT. A
segment is created complete (header + checkpoint) by write-fsync-rename, then only
appended to; it is sealed (fsynced, never written again) before the next one is created.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import CorruptionError
from .files import fsync_dir, read_file, write_all
from .record import (
    FILE_HEADER_SIZE,
    SEGMENT_MAGIC,
    Damage,
    RecordType,
    decode_file_header,
    encode_file_header,
    record_header,
    scan_records,
)

__all__ = ["SEG_NAME", "segment_name", "create_segment", "read_segment", "SegmentContents"]

SEG_NAME = re.compile(r"^([0-9a-f]{16})\.wal$")


def segment_name(seq: int) -> str:
    return f"{seq:016x}.wal"


def create_segment(dirpath: str, seq: int, checkpoint: bytes) -> tuple[int, int]:
    """Create segment `seq` holding its header and checkpoint record, durably (fsync of
    the file before the rename, of the directory after). Returns (append fd, size)."""
    final = os.path.join(dirpath, segment_name(seq))
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        head = encode_file_header(SEGMENT_MAGIC, seq)
        rec = record_header(RecordType.CHECKPOINT, checkpoint)
        write_all(fd, head, rec, checkpoint)
        os.fsync(fd)
        os.rename(tmp, final)
        fsync_dir(dirpath)
    except BaseException:
        os.close(fd)
        raise
    return fd, len(head) + len(rec) + len(checkpoint)


@dataclass(frozen=True, slots=True)
class SegmentContents:
    path: str
    seq: int
    size: int
    records: list[tuple[int, int, bytes]]  # (offset, type, payload)
    damage: Damage | None
    buf: bytes  # kept for the torn-tail check


def read_segment(path: str, seq: int) -> SegmentContents:
    buf = read_file(path)
    _, got_seq, _ = decode_file_header(buf, path, SEGMENT_MAGIC)
    if got_seq != seq:
        raise CorruptionError(f"{path}: offset 16: header holds sequence {got_seq}, its name says {seq}")
    records, damage = scan_records(buf, FILE_HEADER_SIZE)
    return SegmentContents(path, seq, len(buf), records, damage, buf)
