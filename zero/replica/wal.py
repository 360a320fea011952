"""The WAL as the Ready loop writes it: one worker thread, so the event loop keeps
serving while an fsync is in flight.

The event loop owns RawNode and ZeroState; the worker thread only writes files. The
core reads the storage's in-memory view only below the unstable offset, which save()
never changes, so the two never touch the same entries. The storage is never used from
two threads at once: a write runs inline on the loop only when nothing is running in
(or queued for) the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable
from typing import TypeVar

from raftcore import Ready, raftpb
from raftcore.wal import DiskStorage

from zero.log import Logger
from zero.replica.ports import WalStorage

__all__ = ["WalWriter", "open_wal", "WAL_DIR"]

WAL_DIR = "wal"  # inside the data dir

T = TypeVar("T")


def open_wal(data_dir: str, logger: Logger) -> DiskStorage:
    """Open (creating, recovering, locking) the WAL of the zero in `data_dir`."""
    return DiskStorage.open(os.path.join(data_dir, WAL_DIR), logger=logger)


class WalWriter:
    """Writes of one node's storage, off the event loop when they may block."""

    def __init__(self, storage: WalStorage) -> None:
        self.storage = storage
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zero-wal")
        self._jobs = 0  # calls running in (or queued for) the WAL thread

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn in the WAL thread."""
        self._jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._io, fn)
        finally:
            self._jobs -= 1

    async def save(self, rd: Ready) -> None:
        """Persist rd's snapshot, entries and hard state (one fdatasync when must_sync)."""
        if not rd.must_sync and rd.snapshot is None and self._jobs == 0:
            # Only a new commit index (no fsync, one small write): a thread hand-off
            # would cost more than the write, on the commit path.
            self._save(rd)
        else:
            await self.run(lambda: self._save(rd))

    def _save(self, rd: Ready) -> None:
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot, must_sync=rd.must_sync)

    async def snapshot(self, index: int, conf_state: raftpb.ConfState, data: bytes, compact_to: int) -> None:
        """Store a snapshot of the state at `index`, then compact the log up to
        `compact_to` (when that is past its first entry)."""
        storage = self.storage

        def work() -> None:
            storage.create_snapshot(index, conf_state, data)
            if compact_to > storage.first_index():
                storage.compact(compact_to)

        await self.run(work)

    def close_now(self) -> None:
        """Close the storage from the loop (a start that failed before anything ran)."""
        self.storage.close()

    async def close(self) -> None:
        """Sync and close the storage in the WAL thread, then end the thread."""
        await asyncio.get_running_loop().run_in_executor(self._io, self.storage.close)
        self._io.shutdown(wait=True)
