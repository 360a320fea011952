"""A data node's durable record of prewritten writes, and the group commit that writes
it together with the versions of applied commits.

    <dir>/pending.log   one JSON line per event:
                        {"p": start_ts, "w": [[tablet, key b64, value b64], ...]}  prewritten
                        {"r": start_ts}                                             resolved

A prewrite is acknowledged only once its line is fsynced, so a committed transaction's
writes survive a crash of the node that holds them. A resolution line is written only
after the commit's versions are fsynced in their tablets' logs (one batch writes the
versions first): a crash in between leaves the prewrite, which the node resolves again
after its restart (TxnStatus; applying a version twice keeps one). An abort's
resolution may be lost the same way, harmlessly. The log is rewritten with only the
live prewrites once it holds 10,000 resolved ones.

`Flusher` batches what concurrent callers ask to persist into one write and one fsync
per file, in a worker thread; each caller waits for its own batch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zero.datanode.store import TabletStore, Version

__all__ = ["Write", "PendingLog", "Flusher", "REWRITE_AFTER"]

# (tablet, key, value): one buffered write of a transaction.
Write = tuple[str, bytes, bytes]
REWRITE_AFTER = 10_000  # resolved prewrites in the log before it is rewritten


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def prewrite_line(start_ts: int, writes: Sequence[Write]) -> str:
    return json.dumps({"p": start_ts, "w": [[t, _b64(k), _b64(v)] for t, k, v in writes]}) + "\n"


def resolved_line(start_ts: int) -> str:
    return json.dumps({"r": start_ts}) + "\n"


class PendingLog:
    """pending.log of a data dir (None: nothing is written)."""

    def __init__(self, data_dir: str | None) -> None:
        self.path = os.path.join(data_dir, "pending.log") if data_dir else None
        self._lock = threading.Lock()
        self.resolved = 0  # resolution lines since the last rewrite

    def load(self) -> dict[int, list[Write]]:
        """The prewrites not resolved, by start_ts (a torn last line is cut off)."""
        live: dict[int, list[Write]] = {}
        if self.path is None or not os.path.exists(self.path):
            return live
        good = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                rec = json.loads(line)
                if "p" in rec:
                    ws = live.setdefault(int(rec["p"]), [])
                    ws.extend((t, base64.b64decode(k), base64.b64decode(v)) for t, k, v in rec["w"])
                else:
                    live.pop(int(rec["r"]), None)
                    self.resolved += 1
                good += len(line)
        if good != os.path.getsize(self.path):
            os.truncate(self.path, good)
        return live

    def append(self, lines: Sequence[str]) -> None:
        """Append and fsync (any thread)."""
        if self.path is None or not lines:
            return
        with self._lock:
            with open(self.path, "a", encoding="ascii") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
            self.resolved += sum(1 for ln in lines if ln.startswith('{"r"'))

    def rewrite(self, live: dict[int, list[Write]]) -> None:
        """Replace the log with the live prewrites only (any thread; appends wait)."""
        if self.path is None:
            return
        with self._lock:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="ascii") as f:
                for ts, ws in live.items():
                    f.write(prewrite_line(ts, ws))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self.resolved = 0


@dataclass(slots=True)
class _Batch:
    versions: list[Version]
    lines: list[str]
    done: asyncio.Future[None]


class Flusher:
    """Group commit of versions (to the tablets' logs) and pending.log lines. Without a
    data dir every call returns at once.

    It also rewrites pending.log (`compact`): with the live prewrites as memory holds
    them just before the write that precedes the rewrite, so every prewrite whose line
    is on disk by then and that is still live is in it (one whose line comes in a later
    batch is written again then: loading merges the two)."""

    def __init__(self, store: TabletStore, log: PendingLog, *, live: Callable[[], dict[int, list[Write]]],
                 on_error: Callable[[BaseException], None]) -> None:
        self._store = store
        self._log = log
        self._live = live
        self._on_error = on_error
        self._compact = False
        self._queue: list[_Batch] = []
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None  # batches finish in order: the last one
        self.durable = store.data_dir is not None

    def submit(self, versions: Sequence[Version] = (), lines: Sequence[str] = ()) -> asyncio.Future[None]:
        """Queue for the next write; the future is done once it is on disk. Versions
        are written before the lines of the same batch."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.durable:
            fut.set_result(None)
            return fut
        fut.add_done_callback(_retrieve)  # a caller that does not wait must not leave it unretrieved
        self._queue.append(_Batch(list(versions), list(lines), fut))
        self._last = fut
        self._kick()
        return fut

    def compact(self) -> asyncio.Future[None]:
        """Rewrite pending.log with the live prewrites only, in order with the writes."""
        self._compact = True
        return self.submit()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="datanode-flusher")

    async def drain(self) -> None:
        """Until everything submitted so far is on disk (or failed)."""
        if self._last is not None and not self._last.done():
            await asyncio.wait({self._last})

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            versions = [v for b in batch for v in b.versions]
            lines = [ln for b in batch for ln in b.lines]
            live = self._live() if self._compact else None
            self._compact = False
            try:
                await asyncio.to_thread(self._write, versions, lines, live)
            except OSError as e:  # a disk that fails: the callers see it, the node says so
                self._on_error(e)
                for b in batch:
                    if not b.done.done():
                        b.done.set_exception(e)
                continue
            for b in batch:
                if not b.done.done():
                    b.done.set_result(None)

    def _write(self, versions: list[Version], lines: list[str], live: dict[int, list[Write]] | None) -> None:
        self._store.persist(versions)
        self._log.append(lines)
        if live is not None:
            self._log.rewrite(live)


def _retrieve(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()
