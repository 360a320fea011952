"""raftcore.wal: durable Storage beside the core — a write-ahead log plus snapshot files.

How it stacks (bottom to top):
  record     file headers and CRC-32C record framing, torn-tail detection
  files      full writes, directory fsync, atomic create-by-rename
  walpb      protobuf payloads of the WAL records
  segment    WAL segment files: create, read
  snapfile   snapshot files: write atomically, read and verify
  view       View: the in-memory MemoryStorage every read is served from, plus the
             state changes replay needs and the checkpoint that starts a segment
  wal        WriteAheadLog: the segments in order, appends to the open one, fdatasync,
             cut, deletion of old segments
  recovery   recover(): replay the segments into the view, check the snapshot files,
             cut a torn tail (on open)
  storage    DiskStorage: the Storage protocol over the view, plus save(),
             create_snapshot(), compact(); owns the lock, the log and the snapshot files

The core never imports this package (it only reads through raftcore.Storage); this is
the one part of raftcore that does I/O. Format and recovery rules: docs/DESIGN.md ("Durable storage").
"""

from .record import FORMAT_VERSION
from .storage import DEFAULT_SEGMENT_SIZE, DiskStorage

__all__ = ["DiskStorage", "DEFAULT_SEGMENT_SIZE", "FORMAT_VERSION"]
