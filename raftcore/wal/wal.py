"""WriteAheadLog: the WAL's segments, oldest first, and the open one that records are
appended to (etcd's wal.go): append, fdatasync, cut a new segment, delete old ones.

Each segment starts with a checkpoint of the view (hard state, snapshot metadata,
compaction point, last index/term), so a segment can be deleted from the front once
every index it ever wrote is at or below both the compaction point and the snapshot
index (the caller passes that bound): replay then starts from the first surviving
segment (recovery.py).

Invariants while open: `segments[-1]` is the open segment, `fd` appends to it and
`size` is its length; `dirty` is set while records written to it are not fdatasynced.
A failed write, fsync, create or delete calls `fail(what, error)`, which must raise:
the state on disk is then unknown (DiskStorage poisons itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from .files import fsync_dir, write_all
from .record import RECORD_HEADER_SIZE, RecordType, record_header
from .segment import create_segment, segment_name

__all__ = ["Segment", "WriteAheadLog"]


@dataclass(slots=True)
class Segment:
    seq: int
    path: str
    # The highest index any record of this segment wrote or reset to, or its
    # checkpoint's last index: the segment may go once this is compacted and snapshotted.
    max_index: int


class WriteAheadLog:
    """The segment files of one storage directory, appended to in order."""

    __slots__ = ("dir", "fd", "size", "segment_size", "segments", "dirty", "_fail")

    def __init__(self, dirpath: str, segment_size: int, fail: Callable[[str, OSError], NoReturn]) -> None:
        self.dir = dirpath
        self.fd = -1
        self.size = 0
        self.segment_size = segment_size
        self.segments: list[Segment] = []
        self.dirty = False  # written to the open segment but not yet fdatasynced
        self._fail = fail

    # -- opening (an OSError propagates: DiskStorage.open reports it) -----------------
    def create(self, checkpoint: bytes) -> None:
        """Start a new log: segment 0, holding `checkpoint`."""
        self.fd, self.size = create_segment(self.dir, 0, checkpoint)
        self.segments = [Segment(0, os.path.join(self.dir, segment_name(0)), 0)]

    def resume(self, segments: list[Segment]) -> None:
        """Append to the last of the recovered `segments`. What replay read is what the
        storage now builds on: it is made durable before anything is deleted on its
        account."""
        self.segments = segments
        self.fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size
        os.fdatasync(self.fd)

    # -- appending ---------------------------------------------------------------------
    @property
    def position(self) -> tuple[int, int]:
        """Where the next record starts: (open segment's sequence number, offset)."""
        return self.segments[-1].seq, self.size

    @property
    def full(self) -> bool:
        """The open segment reached the segment size: time to cut."""
        return self.size >= self.segment_size

    def append(self, rtype: RecordType, payload: bytes) -> None:
        """Write one record to the open segment (not synced: see sync())."""
        try:
            write_all(self.fd, record_header(rtype, payload), payload)
        except OSError as e:
            self._fail("write", e)
        self.size += RECORD_HEADER_SIZE + len(payload)
        self.dirty = True

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            self._fail("fdatasync", e)
        self.dirty = False

    def wrote(self, index: int) -> None:
        """The open segment wrote (or reset the log to) `index`."""
        seg = self.segments[-1]
        seg.max_index = max(seg.max_index, index)

    def cut(self, checkpoint: bytes, last_index: int) -> None:
        """Seal the open segment (fdatasync) and start the next one with `checkpoint`,
        the view's state, whose last index is `last_index`."""
        if self.dirty:
            self.sync()
        seq = self.segments[-1].seq + 1
        try:
            fd, size = create_segment(self.dir, seq, checkpoint)
        except OSError as e:
            self._fail("creating a WAL segment", e)
        old, self.fd, self.size = self.fd, fd, size
        self.segments.append(Segment(seq, os.path.join(self.dir, segment_name(seq)), last_index))
        os.close(old)

    # -- deleting and closing ------------------------------------------------------------
    def delete_through(self, upto: int) -> None:
        """Delete sealed segments, oldest first, while every index they wrote is at or
        below `upto` (both the compaction point and the snapshot index). Callers have
        fsynced the record that moved those points."""
        doomed = 0
        for seg in self.segments[:-1]:
            if seg.max_index > upto:
                break
            doomed += 1
        if not doomed:
            return
        try:
            for seg in self.segments[:doomed]:
                os.unlink(seg.path)
            fsync_dir(self.dir)
        except OSError as e:
            self._fail("deleting old WAL segments", e)
        del self.segments[:doomed]

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = -1
