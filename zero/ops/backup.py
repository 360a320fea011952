"""Backup files: a consistent ZeroState snapshot with a header (docs/DESIGN.md "Disaster recovery").

Layout (little-endian), written by the leader in ZeroAdmin.Backup and streamed in chunks:

    0  magic     8 bytes   b"ZEROBKUP"
    8  format    u16       FORMAT
    10 flags     u16       0
    12 meta_len  u32       length of the BackupHeader protobuf that follows the fixed header
    16 body_len  u64       length of the body
    24 body_crc  u32       CRC-32C of the body
    28 head_crc  u32       CRC-32C of bytes 0..28 and of the BackupHeader bytes
    32 meta      BackupHeader (state.proto): cluster id, Raft index and term, created time, ...
       body      ZeroState.snapshot() bytes (its own magic, format and CRC-32 inside)

The first 12 bytes never change between formats, so a file from a newer zero is reported
as newer rather than as damage. Every check names what is wrong: a truncated header,
meta or body (with the sizes), a checksum mismatch, a newer format, a body that does not
decode into a valid state, or metadata that disagrees with the body.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c
from google.protobuf.message import DecodeError

from zero.errors import ZeroError
from zero.pb import state_pb2, zero_pb2
from zero.state.machine import ZeroState
from zero.state.validate import CorruptStateError

__all__ = ["FORMAT", "MAGIC", "BackupError", "Backup", "encode", "decode", "read", "verify", "write_atomically",
           "temp_path", "chunks", "CHUNK_BYTES"]

FORMAT = 1
MAGIC = b"ZEROBKUP"
CHUNK_BYTES = 1 << 20  # data per BackupChunk message
_FIXED = struct.Struct("<8sHHIQI")  # without head_crc
_CRC = struct.Struct("<I")
HEADER_SIZE = _FIXED.size + _CRC.size  # 32
MAX_META = 1 << 16

crc32c = google_crc32c.value


class BackupError(ZeroError):
    """A backup file that cannot be used; the message says what is wrong with it."""

    code = "FAILED_PRECONDITION"


@dataclass(frozen=True, slots=True)
class Backup:
    """A decoded, verified backup."""

    header: state_pb2.BackupHeader
    state: ZeroState
    body: bytes

    def summary(self) -> str:
        h, st = self.header, self.state.view
        members = sum(len(g.members) for g in st.groups.values())
        tablets = sum(len(g.tablets) for g in st.groups.values())
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h.created_unix_ms / 1000))
        return (f"cluster {h.cluster_id}  raft index {h.raft_index} term {h.raft_term}  created {created}\n"
                f"{len(st.zeros)} zeros, {len(st.groups)} groups, {members} members, {tablets} tablets, "
                f"{len(st.removed)} removed  max_uid {st.max_uid}  max_txn_ts {st.max_txn_ts}  "
                f"format {FORMAT}, body {len(self.body):,} bytes")


def encode(body: bytes, *, cluster_id: str, index: int, term: int, leader_id: int = 0,
           created_unix_ms: int | None = None) -> bytes:
    """A whole backup file for `body` (ZeroState.snapshot() bytes)."""
    st = ZeroState.restore(body).view  # never write a backup that cannot be read back
    meta = state_pb2.BackupHeader(
        format=FORMAT, cluster_id=cluster_id, raft_index=index, raft_term=term,
        created_unix_ms=int(time.time() * 1000) if created_unix_ms is None else created_unix_ms,
        state_version=st.version, max_uid=st.max_uid, max_txn_ts=st.max_txn_ts, leader_id=leader_id,
        cluster_version=st.cluster_version).SerializeToString(deterministic=True)
    fixed = _FIXED.pack(MAGIC, FORMAT, 0, len(meta), len(body), crc32c(body))
    head_crc = crc32c(fixed + meta)
    return fixed + _CRC.pack(head_crc) + meta + body


def decode(data: bytes, *, name: str = "backup") -> Backup:
    """Verify and decode a whole backup file; BackupError names what is wrong."""
    n = len(data)
    if n < len(MAGIC) and MAGIC.startswith(bytes(data)):
        raise BackupError(f"{name}: truncated: {n} bytes, the header alone is {HEADER_SIZE}")
    if data[:len(MAGIC)] != MAGIC:
        raise BackupError(f"{name}: not a zero backup (bad magic)")
    fmt = struct.unpack_from("<H", data, 8)[0] if n >= 10 else 0
    if fmt > FORMAT:
        raise BackupError(f"{name}: backup format {fmt} is newer than this zero reads ({FORMAT}): "
                          f"written by a newer zero; restore it with that release")
    if n < HEADER_SIZE:
        raise BackupError(f"{name}: truncated: {n} bytes, the header alone is {HEADER_SIZE}")
    magic, fmt, flags, meta_len, body_len, body_crc = _FIXED.unpack_from(data)
    (head_crc,) = _CRC.unpack_from(data, _FIXED.size)
    if fmt != FORMAT:
        raise BackupError(f"{name}: backup format {fmt} is not supported (this zero reads {FORMAT})")
    if meta_len > MAX_META:
        raise BackupError(f"{name}: header is corrupt (metadata length {meta_len})")
    if n < HEADER_SIZE + meta_len:
        raise BackupError(f"{name}: truncated in the header: {n} bytes, the header needs {HEADER_SIZE + meta_len}")
    meta_bytes = data[HEADER_SIZE:HEADER_SIZE + meta_len]
    if crc32c(bytes(data[:_FIXED.size]) + bytes(meta_bytes)) != head_crc:
        raise BackupError(f"{name}: header is corrupt (header checksum mismatch)")
    body = bytes(data[HEADER_SIZE + meta_len:])
    if len(body) < body_len:
        raise BackupError(f"{name}: truncated: the body is {len(body):,} bytes, the header says {body_len:,} "
                          f"(file is {n:,} bytes, should be {HEADER_SIZE + meta_len + body_len:,})")
    if len(body) > body_len:
        raise BackupError(f"{name}: {len(body) - body_len:,} unexpected bytes after the body")
    if crc32c(body) != body_crc:
        raise BackupError(f"{name}: body is corrupt (checksum mismatch)")
    try:
        meta = state_pb2.BackupHeader.FromString(meta_bytes)
    except DecodeError as e:
        raise BackupError(f"{name}: header metadata does not decode: {e}") from None
    try:
        state = ZeroState.restore(body)
    except CorruptStateError as e:
        raise BackupError(f"{name}: the state in the body is unusable: {e}") from None
    st = state.view
    if (meta.cluster_id, meta.max_uid, meta.max_txn_ts, meta.state_version) != (
            st.cluster_id, st.max_uid, st.max_txn_ts, st.version):
        raise BackupError(f"{name}: header disagrees with the body (cluster id, leases or version)")
    if meta.raft_index < st.version:
        raise BackupError(f"{name}: header raft index {meta.raft_index} is below the state's version {st.version}")
    return Backup(meta, state, body)


def read(path: str) -> Backup:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BackupError(f"{path}: cannot read: {e.strerror or e}") from None
    return decode(data, name=path)


def verify(path: str) -> Backup:
    """Check a backup file without a cluster (zero admin backup --verify)."""
    return read(path)


def chunks(data: bytes, *, version: int, cluster_id: str,
           size: int = CHUNK_BYTES) -> Iterator[zero_pb2.BackupChunk]:
    """The BackupChunk stream of a whole file (at least one chunk, the last marked)."""
    total = len(data)
    off = 0
    while True:
        piece = data[off:off + size]
        last = off + len(piece) >= total
        yield zero_pb2.BackupChunk(data=piece, offset=off, total_size=total, last=last, version=version,
                                   cluster_id=cluster_id)
        off += len(piece)
        if last:
            return


def temp_path(path: str) -> str:
    """The temp file write_atomically(path) writes before its rename (beside path: same
    file system)."""
    return f"{path}.tmp.{os.getpid()}"


def write_atomically(path: str, parts: Iterator[bytes] | list[bytes]) -> int:
    """Write `parts` to `path` through a temp file, fsync, rename and directory fsync;
    returns the size. A failure leaves `path` as it was."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = temp_path(path)
    n = 0
    try:
        with open(tmp, "wb") as f:
            for p in parts:
                f.write(p)
                n += len(p)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return n
