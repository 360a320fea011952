"""RaftNode: one raftcore.Node driven by a ticker and a Ready loop (raftexample's raft.go).

The Ready loop does, for each Ready, in this order:
  1. send rd.messages — allowed before persisting: raftcore holds back the responses
     (votes, append acks) that depend on this Ready's unpersisted state (thesis §3.8),
     so what is sent now is safe, and the leader's MsgApps reach followers while its
     own disk write is in flight (thesis §10.2.1);
  2. persist rd.snapshot, rd.entries and rd.hard_state with one DiskStorage.save,
     fdatasync'd when rd.must_sync;
  3. apply rd.committed_entries to the KVStore (apply_conf_change for conf changes) and
     answer the HTTP requests waiting on them or on rd.read_states;
  4. node.advance(rd); then maybe snapshot + compact.

Persisting inline, on the event loop: DiskStorage is not thread-safe, and raftcore reads
it (entries to send, terms) on the event loop whenever a message is stepped or a Ready is
built. Saving in a worker thread would need a lock around every Node call as well as
around the storage; inline, the loop stalls for one fdatasync per Ready, and everything
that arrives meanwhile (proposals, acks) is batched into the next Ready, which is what
keeps throughput up anyway. A failed write or fsync raises StorageError out of the loop
and ends the process: it is never retried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any

from raftcore import Config, Node, NodeStoppedError, ProposalDroppedError, Ready, SoftState, raftpb
from raftcore.wal import DiskStorage

from .kvstore import KVStore, Op, encode_op
from .transport import Transport

__all__ = ["RaftNode", "NoLeaderError", "RequestTimeoutError"]

log = logging.getLogger("kvstore.raft")


class NoLeaderError(Exception):
    """No leader is known (an election is under way, or this node is cut off)."""


class RequestTimeoutError(Exception):
    """The request did not complete in time; for a write, it may still be applied."""


class RaftNode:
    def __init__(
        self,
        node_id: int,
        peers: dict[int, tuple[str, int]],
        data_dir: str,
        *,
        tick_interval: float = 0.1,
        election_tick: int = 10,
        snapshot_count: int = 1000,
        catchup_entries: int = 100,
        request_timeout: float = 5.0,
    ) -> None:
        self.id = node_id
        self._peers = peers
        self._data_dir = data_dir
        self._tick_interval = tick_interval
        self._election_tick = election_tick
        # Take a snapshot every `snapshot_count` applied entries, then compact the log,
        # keeping `catchup_entries` so a slightly lagging follower gets entries, not a
        # whole snapshot (raftexample's snapshotCatchUpEntries).
        self._snapshot_count = snapshot_count
        self._catchup_entries = catchup_entries
        self._timeout = request_timeout

        self.kv = KVStore()
        self.applied = 0
        self._snapshot_index = 0
        self._conf_state = raftpb.ConfState()
        self._lead = 0  # the leader as of the last SoftState

        # Waiters, all resolved by the Ready loop. Request ids and read contexts start
        # with a random per-process nonce: after a restart, entries proposed by the
        # previous incarnation are applied again and must not wake new requests.
        nonce = os.urandom(4).hex()
        self._ids = (f"{node_id}-{nonce}-{n}" for n in itertools.count())
        self._proposals: dict[str, asyncio.Future[None]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._apply_waiters: list[tuple[int, asyncio.Future[None]]] = []

        self._storage: DiskStorage | None = None
        self._node: Node | None = None
        self._transport: Transport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.done: asyncio.Future[None] | None = None  # fails if the Ready loop fails

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        storage = DiskStorage.open(self._data_dir)
        self._storage = storage
        snap = storage.snapshot()
        if snap.metadata.index > 0:
            self.kv.restore(snap.data)
        self.applied = self._snapshot_index = snap.metadata.index
        hard_state, self._conf_state = storage.initial_state()
        config = Config(
            id=self.id,
            storage=storage,
            election_tick=self._election_tick,
            heartbeat_tick=1,
            # What the KVStore already holds; raftcore hands us the committed entries
            # after it (replayed from the WAL on a restart).
            applied=self.applied,
            check_quorum=True,
            pre_vote=True,
            logger=logging.getLogger(f"raftcore.{self.id}"),
        )
        if storage.last_index() == 0 and hard_state.term == 0:
            # A brand-new member: every node of a new cluster bootstraps the same peer
            # list (sorted, so the bootstrap entries are identical everywhere).
            log.info("node %d: new cluster member, peers %s", self.id, sorted(self._peers))
            self._node = Node.start(config, sorted(self._peers))
        else:
            log.info("node %d: restarting from %s (snapshot at %d, last index %d, term %d)",
                     self.id, self._data_dir, snap.metadata.index, storage.last_index(), hard_state.term)
            self._node = Node.restart(config)
        self._transport = Transport(self._node, self.id, self._peers)
        await self._transport.start()
        ready_loop = asyncio.create_task(self._ready_loop(), name="ready-loop")
        self._tasks = [ready_loop, asyncio.create_task(self._ticker(), name="ticker")]
        self.done = ready_loop

    async def stop(self) -> None:
        # The ticker goes first; stopping the node then ends the Ready loop.
        for t in self._tasks[1:]:
            t.cancel()
        if self._node is not None:
            await self._node.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.close()
        if self._storage is not None:
            self._storage.close()
        waiters: list[asyncio.Future[Any]] = [*self._proposals.values(), *self._reads.values(),
                                               *(f for _, f in self._apply_waiters)]
        for fut in waiters:
            if not fut.done():
                fut.set_exception(NoLeaderError("node is stopping"))

    @property
    def node(self) -> Node:
        assert self._node is not None, "start() first"
        return self._node

    # -- the two loops ------------------------------------------------------------------------
    async def _ticker(self) -> None:
        # One tick per interval; election timeout = election_tick..2*election_tick ticks.
        while True:
            await asyncio.sleep(self._tick_interval)
            self.node.tick()

    async def _ready_loop(self) -> None:
        node, storage, transport = self.node, self._storage, self._transport
        assert storage is not None and transport is not None
        try:
            while True:
                rd = await node.ready()
                if rd.soft_state is not None:
                    self._on_soft_state(rd.soft_state)
                transport.send(rd.messages)
                storage.save(rd.hard_state, rd.entries, rd.snapshot, must_sync=rd.must_sync)
                if rd.snapshot is not None:
                    self._apply_snapshot(rd.snapshot)
                self._apply(rd)
                node.advance(rd)
                self._maybe_snapshot()
        except NodeStoppedError:
            return

    def _on_soft_state(self, ss: SoftState) -> None:
        log.info("node %d: %s, leader %d", self.id, ss.raft_state.name.lower(), ss.lead)
        if ss.lead != self._lead:
            self._lead = ss.lead
            # A proposal on its way to the old leader may be lost without a trace; tell
            # the waiting clients now rather than at their timeout. Their outcome is
            # unknown (the new leader may still commit them), as for a timeout.
            for fut in self._proposals.values():
                if not fut.done():
                    fut.set_exception(RequestTimeoutError("the leader changed; the write may or may not be applied"))

    def _apply_snapshot(self, snap: raftpb.Snapshot) -> None:
        """The leader sent us its state: it replaces ours."""
        log.info("node %d: installing snapshot at index %d", self.id, snap.metadata.index)
        self.kv.restore(snap.data)
        self._conf_state = raftpb.ConfState()
        self._conf_state.CopyFrom(snap.metadata.conf_state)
        self.applied = self._snapshot_index = snap.metadata.index

    def _apply(self, rd: Ready) -> None:
        for e in rd.committed_entries:
            if e.type == raftpb.EntryConfChange:
                self._conf_state = self.node.apply_conf_change(raftpb.ConfChange.FromString(e.data))
            elif e.type == raftpb.EntryConfChangeV2:
                self._conf_state = self.node.apply_conf_change(raftpb.ConfChangeV2.FromString(e.data))
            elif e.data:  # empty entries are new leaders' no-ops
                op = self.kv.apply(e.data)
                fut = self._proposals.pop(op.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            self.applied = e.index
        for rs in rd.read_states:
            rfut = self._reads.pop(rs.request_ctx, None)
            if rfut is not None and not rfut.done():
                rfut.set_result(rs.index)
        if self._apply_waiters:
            still = []
            for index, afut in self._apply_waiters:
                if index <= self.applied:
                    if not afut.done():
                        afut.set_result(None)
                else:
                    still.append((index, afut))
            self._apply_waiters = still

    def _maybe_snapshot(self) -> None:
        if self.applied - self._snapshot_index < self._snapshot_count:
            return
        storage = self._storage
        assert storage is not None
        storage.create_snapshot(self.applied, self._conf_state, self.kv.snapshot())
        self._snapshot_index = self.applied
        compact_to = self.applied - self._catchup_entries
        if compact_to >= storage.first_index():
            storage.compact(compact_to)
        log.info("node %d: snapshot at index %d, log compacted to %d",
                 self.id, self.applied, storage.first_index() - 1)

    # -- requests -------------------------------------------------------------------------------
    def _need_leader(self) -> None:
        if self.node.status().lead == 0:
            raise NoLeaderError("no leader")

    async def put(self, key: str, value: str) -> None:
        """Replicate key=value; returns once this node has applied it."""
        await self._propose(Op(next(self._ids), "put", key, value))

    async def delete(self, key: str) -> None:
        await self._propose(Op(next(self._ids), "delete", key))

    async def _propose(self, op: Op) -> None:
        self._need_leader()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._proposals[op.request_id] = fut
        try:
            # Accepted is not committed: a proposal forwarded to a leader that then
            # loses its leadership is lost silently, hence the timeout.
            await self.node.propose(encode_op(op))
            async with asyncio.timeout(self._timeout):
                await fut
        except ProposalDroppedError as e:
            raise NoLeaderError(str(e)) from e
        except TimeoutError as e:
            raise RequestTimeoutError("write not applied in time; it may still be") from e
        finally:
            self._proposals.pop(op.request_id, None)

    async def get(self, key: str) -> str | None:
        """A linearizable read (ReadIndex, thesis §6.4): ask the leader for its commit
        index, confirmed by a quorum, wait until we have applied up to it, then read."""
        self._need_leader()
        ctx = next(self._ids).encode()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._reads[ctx] = fut
        try:
            async with asyncio.timeout(self._timeout):
                await self.node.read_index(ctx)  # dropped silently without a leader
                index = await fut
                if self.applied < index:
                    afut: asyncio.Future[None] = loop.create_future()
                    self._apply_waiters.append((index, afut))
                    await afut
        except TimeoutError as e:
            raise NoLeaderError("read not confirmed by a leader in time") from e
        finally:
            self._reads.pop(ctx, None)
        return self.kv.get(key)

    def status(self) -> dict[str, Any]:
        st = self.node.status()
        return {
            "id": self.id,
            "role": st.raft_state.name.lower(),
            "leader": st.lead,
            "term": st.term,
            "commit": st.commit,
            "applied": self.applied,
            "snapshot_index": self._snapshot_index,
            "keys": len(self.kv),
        }
