"""The Ready loop and the tick timer of one replica.

Data flow (one Ready):
  1. send rd.messages (they never depend on this Ready's unpersisted state, so a
     leader replicates while its own fsync is in flight — thesis §10.2.1);
  2. persist snapshot/entries/hard state through the WAL (zero/replica/wal.py), in its
     worker thread so the event loop keeps serving (one fdatasync per Ready when
     must_sync), then send the acks of what is now durable;
  3. install a received snapshot, apply committed entries to ZeroState (conf changes
     through apply_conf_change), resolve the proposers waiting on them, answer reads;
  4. advance(); every N applied entries, snapshot the state and compact the log.

Leadership changes and new terms go to the node's Leadership (zero/replica/leadership.py);
the node hands in how to send, and what an applied batch, an installed snapshot and a
failure mean to it. Time comes from the injected Clock: the tick timer runs on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from raftcore import Node, NodeStoppedError, Ready, raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.replica.apply import Applier
from zero.replica.leadership import Leadership
from zero.replica.ports import Clock
from zero.replica.reads import ReadRounds
from zero.replica.snapshots import Snapshots
from zero.replica.wal import WalWriter
from zero.state.machine import Applied

__all__ = ["ReadyLoop", "PAUSE_TICKS"]

PAUSE_TICKS = 5  # a tick timer this many periods late was paused (SIGSTOP): it skips, not bursts


class ReadyLoop:
    """Drives one raftcore Node: ticks it, and processes each Ready it hands out."""

    def __init__(self, raft: Node, *, wal: WalWriter, applier: Applier, snapshots: Snapshots, reads: ReadRounds,
                 clock: Clock, metrics: Metrics, log: Logger, tick_seconds: float,
                 leadership: Leadership, send: Callable[[list[raftpb.Message]], None],
                 on_applied: Callable[[list[Applied]], None], on_snapshot_installed: Callable[[], None],
                 on_failure: Callable[[BaseException], None]) -> None:
        self._raft = raft
        self._wal = wal
        self._applier = applier
        self._snapshots = snapshots
        self._reads = reads
        self._clock = clock
        self._metrics = metrics
        self._log = log
        self._tick_seconds = tick_seconds
        self._leadership = leadership
        self._send = send
        self._on_applied = on_applied
        self._on_snapshot_installed = on_snapshot_installed
        self._on_failure = on_failure
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="zero-ready-loop"),
                       loop.create_task(self._ticker(), name="zero-ticker")]

    async def stop(self) -> None:
        """Cancel the loop and the timer and wait for both (the raft Node is stopped first)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, NodeStoppedError):
                pass

    async def _ticker(self) -> None:
        clock = self._clock
        period = self._tick_seconds
        next_at = clock.monotonic() + period
        raft = self._raft
        while not self._stopping:
            await clock.sleep(max(0.0, next_at - clock.monotonic()))
            next_at += period
            if clock.monotonic() - next_at > PAUSE_TICKS * period:
                next_at = clock.monotonic() + period  # paused (SIGSTOP): don't burst ticks
            raft.tick()
            self._reads.expire(leader_known=bool(self._leadership.lead))

    async def _run(self) -> None:
        raft = self._raft
        clock = self._clock
        m = self._metrics
        applier = self._applier
        try:
            while True:
                rd = await raft.ready()
                t0 = clock.monotonic()
                # The term first: a Ready that names a new leader carries that leader's
                # term in its hard state (a follower meets a leader of a higher term), so
                # the leader change is recorded, logged and announced with its own term.
                if rd.hard_state is not None:
                    self._leadership.term = rd.hard_state.term
                    m.term.set(rd.hard_state.term)
                    m.commit_index.set(rd.hard_state.commit)
                if rd.soft_state is not None:
                    self._leadership.update(rd.soft_state)
                self._send(rd.messages)
                # A Ready that only moves the commit index applies first: everything it
                # commits was made durable here by earlier Readys (the commit index
                # itself needs no durability), so the proposers' answers do not wait
                # for its write.
                early = bool(rd.committed_entries) and not rd.entries and rd.snapshot is None and not rd.must_sync
                if early:
                    self._apply(rd)
                if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                    t1 = clock.monotonic()
                    await self._wal.save(rd)
                    if rd.must_sync:
                        m.wal_fsync_seconds.observe(clock.monotonic() - t1)
                    # Acks of what is now durable go out before the apply below.
                    self._send(raft.persisted(rd))
                if rd.snapshot is not None:
                    applier.install(rd.snapshot)
                    self._log.info("installed snapshot from leader", index=rd.snapshot.metadata.index,
                                   term=rd.snapshot.metadata.term)
                    self._on_snapshot_installed()
                if rd.committed_entries and not early:
                    self._apply(rd)
                for rs in rd.read_states:
                    self._reads.on_read_state(rs.request_ctx, rs.index)
                raft.advance(rd)
                self._reads.release(applier.applied)
                m.ready_seconds.observe(clock.monotonic() - t0)
                if self._snapshots.due():
                    await self._snapshots.take()
        except (asyncio.CancelledError, NodeStoppedError):
            raise
        except BaseException as e:  # a failed fsync or a bug: stop serving, loudly
            self._on_failure(e)
            raise

    def _apply(self, rd: Ready) -> None:
        applied = self._applier.apply(rd.committed_entries, self._raft)
        if applied:
            self._on_applied(applied)
