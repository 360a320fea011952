"""Snapshots of the replica: taken every `snapshot_every` applied entries to compact the
log, and the fresh snapshot a leader sends a follower that needs one.

A snapshot keeps CATCHUP_ENTRIES of log behind it, so a briefly lagging follower catches
up from the log instead of needing the whole state.
"""

from __future__ import annotations

from raftcore import Node, RaftError, raftpb

from zero import buggify
from zero.log import Logger
from zero.metrics import Metrics
from zero.replica.apply import Applier
from zero.replica.wal import WalWriter

__all__ = ["Snapshots", "CATCHUP_ENTRIES"]

# Keep this many entries behind a snapshot, so a briefly lagging follower catches up
# from the log instead of needing the whole snapshot.
CATCHUP_ENTRIES = 1000


class Snapshots:
    def __init__(self, applier: Applier, wal: WalWriter, *, every: int, metrics: Metrics, log: Logger) -> None:
        self._applier = applier
        self._wal = wal
        self._every = every
        self._keep = CATCHUP_ENTRIES  # entries of log the next snapshot keeps behind it
        self._metrics = metrics
        self._log = log

    def due(self) -> bool:
        a = self._applier
        if buggify.ON and a.applied > a.snapshot_index and buggify.fire("snapshots.forced-installs"):
            self._keep = 0  # snapshot now, keep no log: a follower that lags at all needs the snapshot
            return True
        return a.applied - a.snapshot_index >= self._every

    async def take(self) -> int:
        """Snapshot the applied state and compact the log behind it; returns the
        snapshot's index (unchanged when nothing new was applied)."""
        a = self._applier
        index = a.applied
        if index <= a.snapshot_index:
            return a.snapshot_index
        data = a.state.snapshot()
        cs = raftpb.ConfState()
        cs.CopyFrom(a.conf_state)
        compact_to = index - self._keep
        self._keep = CATCHUP_ENTRIES
        await self._wal.snapshot(index, cs, data, compact_to)
        a.snapshot_index = index
        self._metrics.snapshots.inc()
        self._metrics.snapshot_bytes.set(len(data))
        self._log.info("snapshot taken", index=index, bytes=len(data), compacted_to=max(compact_to, 0))
        return index

    def fresh(self, msg: raftpb.Message, raft: Node) -> raftpb.Message:
        """`msg` (a MsgSnap) carrying the state as applied now rather than the last
        stored snapshot, as etcd's server does. The stored one may predate the
        recipient's own admission (a zero that joined after the last snapshot), and
        raftcore refuses a snapshot whose configuration does not include it; a fresher
        snapshot also leaves less log to catch up. Raft accepts any snapshot at or above
        the index it chose."""
        a = self._applier
        index = a.applied
        if index <= msg.snapshot.metadata.index:
            return msg
        try:
            term = raft.term(index)
        except RaftError:
            return msg  # compacted past the applied index: the stored snapshot will do
        fresh = raftpb.Message()
        fresh.CopyFrom(msg)
        snap = fresh.snapshot
        snap.data = a.state.snapshot()
        snap.metadata.index = index
        snap.metadata.term = term
        snap.metadata.conf_state.CopyFrom(a.conf_state)
        return fresh

    def term_at(self, index: int, raft: Node, current_term: int) -> int:
        """The term of applied entry `index`: from the log, else (compacted away) from
        the stored snapshot at that index, else `current_term`."""
        try:
            return raft.term(index)
        except RaftError:
            stored = self._wal.storage.snapshot().metadata
            return stored.term if stored.index == index else current_term
