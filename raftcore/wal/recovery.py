"""Recovery on open: rebuild the view from the WAL segments, check the snapshot files
against it, cut a torn tail (docs/DESIGN.md ("Durable storage"), recovery rules).

Replay starts from the first surviving segment with a view compacted to that segment's
checkpoint's last index: every entry a deleted segment wrote is at or below the
compaction point that allowed the deletion, so it is not part of the state being
rebuilt, and the compaction (or snapshot reset) that moved the point past the checkpoint
is itself in a surviving segment. Recovery checks that it found it (`base_ok` in
replay()).

A snapshot's file is written before the WAL record naming it, after syncing the WAL, and
records where that record starts. So a newer file than the WAL names is either the
orphan of a crash between the two (the log ends exactly at that position: deleted) or
proof that the WAL lost records it had synced (it ends before: refused, see
check_orphans()).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError

from ..errors import CorruptionError, UnavailableError
from ..raftpb import Snapshot, SnapshotMetadata
from .files import fsync_dir
from .record import RecordType, valid_record_after
from .segment import SEG_NAME, read_segment, segment_name
from .snapfile import SNAP_NAME, read_snapshot, snapshot_name
from .view import View
from .wal import Segment
from .walpb import Checkpoint, CompactRecord, SaveRecord

__all__ = ["Logger", "Recovered", "recover", "replay", "check_orphans"]


class Logger(Protocol):
    def warning(self, msg: str, /) -> Any: ...

    def info(self, msg: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recover() found. No segments: a new directory (its first segment is still
    to create)."""

    segments: list[Segment]
    snapshots: list[int]  # the index of every snapshot file, the current one included
    repaired: str | None  # what was cut off the log's tail and why (DiskStorage.repaired)


def recover(d: str, view: View, log: Logger) -> Recovered:
    """Rebuild `view` from the files in directory `d`: delete unfinished `*.tmp` files,
    replay the segments, check every snapshot file, cut a torn tail off the last
    segment. Raises CorruptionError for what a crash does not explain."""
    names = os.listdir(d)
    tmps = [n for n in names if n.endswith(".tmp")]
    for n in tmps:  # unfinished creations: never renamed, so never acknowledged
        os.unlink(os.path.join(d, n))
    if tmps:
        fsync_dir(d)
    seqs = sorted(int(m.group(1), 16) for n in names if (m := SEG_NAME.match(n)))
    snaps = sorted(int(m.group(1), 16) for n in names if (m := SNAP_NAME.match(n)))
    # Every snapshot file must be intact, even one we are about to delete: a damaged
    # file is refused, never silently skipped (docs/DESIGN.md ("Durable storage"), recovery).
    # Keep only where each one's WAL record starts; the current one is read again below.
    snap_pos = {i: read_snapshot(os.path.join(d, snapshot_name(i)), i).wal_pos for i in snaps}
    if not seqs:
        if snaps:
            raise CorruptionError(f"{d}: snapshot files but no WAL segment")
        return Recovered([], snaps, None)
    for a, b in zip(seqs, seqs[1:]):
        if b != a + 1:
            raise CorruptionError(
                f"{os.path.join(d, segment_name(a + 1))}: WAL segment missing "
                f"(have {segment_name(a)} and {segment_name(b)})"
            )
    segments, repair = replay(d, view, seqs)
    last = segments[-1]
    end = repair[0] if repair is not None else os.path.getsize(last.path)
    # Every check before the first change to segments and snapshot files: a refusal
    # leaves them as found.
    # Orphans first: a WAL cut below a newer snapshot is the cause to report, even
    # when the older snapshot it now names was deleted on that newer one's account.
    idx = view.snapshot().metadata.index
    orphans = check_orphans(d, snap_pos, idx, last, end)
    snap: Snapshot | None = None
    if idx > 0:
        path = os.path.join(d, snapshot_name(idx))
        if idx not in snaps:
            raise CorruptionError(f"{path}: snapshot file missing (the WAL's snapshot is at index {idx})")
        snap = read_snapshot(path, idx).snapshot
        if snap.metadata != view.snapshot().metadata:
            raise CorruptionError(f"{path}: offset 32: snapshot metadata differs from the WAL's")
    repaired: str | None = None
    if repair is not None:
        os.truncate(last.path, end)
        repaired = f"{last.path}: offset {end}: {repair[1]}"
        log.warning(
            f"{last.path}: offset {end}: {repair[1]}; torn write at the end of the log "
            f"(an unacknowledged save), cut off"
        )
    for i in orphans:
        log.warning(
            f"{os.path.join(d, snapshot_name(i))}: snapshot file without its WAL record "
            f"(a crash between writing it and the record), deleted"
        )
    if snap is not None:
        view.set_snapshot(snap)
    return Recovered(segments, snaps, repaired)


def check_orphans(
    d: str, snap_pos: dict[int, tuple[int, int] | None], idx: int, last: Segment, end: int
) -> list[int]:
    """The snapshot files newer than the WAL's snapshot `idx` that a crash explains,
    to delete; raises CorruptionError for one the WAL must have lost.

    A snapshot file is written (after syncing the WAL) before the WAL record naming
    it, and records where that record starts. A crash between the two, or one that
    tears the record, leaves the log ending exactly there: the file is an orphan of
    an operation that never returned. A log ending anywhere else lost records it had
    synced — a WAL truncated below its own snapshot — and starting from it would
    serve a state older than the snapshot, losing acknowledged writes. etcd writes
    in the same order but cannot tell the two apart: snap.LoadNewestAvailable skips
    every file the WAL does not name, and would start from the older state.
    Version-1 files did not record the position and are orphans as before."""
    orphans: list[int] = []
    for i, pos in sorted(snap_pos.items()):
        if i <= idx:
            continue  # the current file, or an older one a crash left undeleted
        if pos is None or pos == (last.seq, end):
            orphans.append(i)
            continue
        path = os.path.join(d, snapshot_name(i))
        at = f"{segment_name(pos[0])} offset {pos[1]}"
        if pos > (last.seq, end):
            raise CorruptionError(
                f"{last.path}: offset {end}: the WAL ends here, below snapshot {path} (index {i}), "
                f"whose record starts at {at}: the WAL was synced up to there before that file "
                f"was written, so synced records are lost (a truncated or damaged WAL). Refusing "
                f"to start from a state older than its own snapshot; restore this member from a "
                f"peer or a backup"
            )
        raise CorruptionError(
            f"{last.path}: offset {end}: the WAL continues past {at}, where the record of "
            f"snapshot {path} (index {i}) starts, but never names that snapshot "
            f"(its snapshot is at index {idx})"
        )
    return orphans


def replay(d: str, view: View, seqs: list[int]) -> tuple[list[Segment], tuple[int, str] | None]:
    """Rebuild `view` from the segments `seqs` of directory `d`; returns them, and the
    (offset, reason) of a torn tail to cut off the last one, or None."""
    segments: list[Segment] = []
    base_ok = True
    base_last = 0
    repair: tuple[int, str] | None = None
    for n, seq in enumerate(seqs):
        seg = read_segment(os.path.join(d, segment_name(seq)), seq)
        records, damage = seg.records, seg.damage
        if damage is not None:
            where = f"{seg.path}: offset {damage.offset}: {damage.reason}"
            if n < len(seqs) - 1:
                raise CorruptionError(f"{where} (in a sealed segment)")
            after = valid_record_after(seg.buf, damage.offset)
            if after is not None:
                raise CorruptionError(f"{where}, with an intact record after it at offset {after}")
            if len(records) == 0:
                raise CorruptionError(f"{where} (the segment's checkpoint)")
            repair = (damage.offset, damage.reason)
        if not records or records[0][1] != RecordType.CHECKPOINT:
            raise CorruptionError(f"{seg.path}: offset 32: segment does not start with a checkpoint")
        max_index = 0
        for off, rtype, payload in records:
            try:
                if rtype == RecordType.SAVE:
                    rec = SaveRecord.FromString(payload)
                    if rec.HasField("snapshot"):
                        view.replay_reset(rec.snapshot)
                        max_index = max(max_index, rec.snapshot.index)
                        base_ok = True  # the view is exact again from here
                    ents = rec.entries
                    if len(ents):
                        view.append(list(ents))
                        max_index = max(max_index, ents[0].index + len(ents) - 1)
                    if rec.HasField("hard_state"):
                        view.set_hard_state(rec.hard_state)
                elif rtype == RecordType.COMPACT:
                    cr = CompactRecord.FromString(payload)
                    view.replay_compact(cr.index, cr.term)
                    if cr.index >= base_last:
                        base_ok = True
                elif rtype == RecordType.CREATE_SNAPSHOT:
                    view.replay_snapshot_meta(SnapshotMetadata.FromString(payload))
                elif rtype == RecordType.CHECKPOINT:
                    if off != records[0][0]:
                        raise CorruptionError(f"{seg.path}: offset {off}: checkpoint inside a segment")
                    cp = Checkpoint.FromString(payload)
                    max_index = cp.last_index
                    if n == 0:
                        view.replay_snapshot_meta(cp.snapshot)
                        view.set_hard_state(cp.hard_state)
                        view.replay_reset_entries(cp.last_index, cp.last_term)
                        base_last = cp.last_index
                        base_ok = cp.offset_index == cp.last_index
                    elif cp.hard_state != view.initial_state()[0]:
                        raise CorruptionError(
                            f"{seg.path}: offset {off}: checkpoint hard state differs from the log's"
                        )
                else:
                    raise CorruptionError(f"{seg.path}: offset {off}: unknown record type {rtype}")
            except DecodeError as e:
                raise CorruptionError(
                    f"{seg.path}: offset {off}: undecodable {RecordType(rtype).name} record ({e})"
                ) from e
            except UnavailableError as e:
                raise CorruptionError(f"{seg.path}: offset {off}: log gap on replay: {e}") from e
        segments.append(Segment(seq, seg.path, max_index))
    if not base_ok:
        raise CorruptionError(
            f"{segments[0].path}: offset 32: the segments before it were deleted by a "
            f"compaction past index {base_last} that the log no longer holds"
        )
    return segments, repair
