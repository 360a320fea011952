"""Node: an asyncio wrapper around RawNode (etcd node.go), the only concurrent module
of raftcore's core.

All calls happen on one event loop, so RawNode is never entered concurrently; the
wrapper adds what an asyncio application needs: an awaitable ready(), methods that are
safe to call from any coroutine at any time (also between ready() and advance()), and
a clean stop() that wakes every waiter. Ticking, persisting, sending and applying stay
with the application, as in etcd:

    node = Node.start(config, peers=[1, 2, 3])      # or Node.restart(config)
    while True:
        rd = await node.ready()
        transport.send(rd.messages)        # never depends on this Ready's persistence
        storage.save(rd.hard_state, rd.entries, rd.snapshot, must_sync=rd.must_sync)
        for e in rd.committed_entries: apply(e)                # apply_conf_change too
        node.advance(rd)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .config import Config
from .errors import RaftError
from .raftpb import ConfChange, ConfChangeV2, ConfState, Message
from .rawnode import RawNode
from .ready import Ready, SnapshotStatus, Status

__all__ = ["Node", "NodeStoppedError"]


class NodeStoppedError(RaftError):
    """The node was stopped; no further calls are accepted."""


class Node:
    __slots__ = ("_rn", "_changed", "_stopped", "_outstanding")

    def __init__(self, rawnode: RawNode) -> None:
        self._rn = rawnode
        # Set whenever an input may have produced a Ready; ready() waits on it.
        self._changed = asyncio.Event()
        self._changed.set()
        self._stopped = False
        # A Ready handed out and not yet advanced (ready() waits for advance()).
        self._outstanding = False

    @classmethod
    def start(cls, config: Config, peers: Sequence[int] | None) -> "Node":
        """A brand-new node. With `peers` it bootstraps that configuration; with no
        peers it is a joining node, added by a conf change on the existing cluster."""
        rn = RawNode(config)
        if peers:
            rn.bootstrap(peers)
        return cls(rn)

    @classmethod
    def restart(cls, config: Config) -> "Node":
        """A node restarted from its storage (hard state, log, snapshot)."""
        return cls(RawNode(config))

    # -- helpers -----------------------------------------------------------------------------
    def _check(self) -> None:
        if self._stopped:
            raise NodeStoppedError("raft node is stopped")

    def _touch(self) -> None:
        self._changed.set()

    @property
    def rawnode(self) -> RawNode:
        """The wrapped RawNode, for inspection in tests."""
        return self._rn

    # -- input ---------------------------------------------------------------------------------
    def tick(self) -> None:
        self._check()
        self._rn.tick()
        self._touch()

    async def campaign(self) -> None:
        self._check()
        self._rn.campaign()
        self._touch()

    async def propose(self, data: bytes) -> None:
        """Hand a proposal to Raft. Raises ProposalDroppedError if it cannot be
        accepted (no leader, transfer in progress, size limit); acceptance does not
        mean it will commit — watch the committed entries."""
        self._check()
        try:
            self._rn.propose(data)
        finally:
            self._touch()

    async def propose_batch(self, datas: Sequence[bytes]) -> None:
        self._check()
        try:
            self._rn.propose_batch(datas)
        finally:
            self._touch()

    async def propose_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        self._check()
        try:
            self._rn.propose_conf_change(cc)
        finally:
            self._touch()

    async def step(self, m: Message) -> None:
        self._check()
        try:
            self._rn.step(m)
        finally:
            self._touch()

    def step_nowait(self, m: Message) -> None:
        """step() for callers that are not coroutines (e.g. transport callbacks)."""
        self._check()
        try:
            self._rn.step(m)
        finally:
            self._touch()

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        self._check()
        cs = self._rn.apply_conf_change(cc)
        self._touch()
        return cs

    async def transfer_leadership(self, lead: int, transferee: int) -> None:
        """Ask for leadership to move to `transferee`. `lead` is the leader the caller
        believes in, kept for etcd's signature; the request goes to whoever leads (a
        follower forwards it)."""
        self._check()
        self._rn.transfer_leader(transferee)
        self._touch()

    async def read_index(self, rctx: bytes) -> None:
        self._check()
        self._rn.read_index(rctx)
        self._touch()

    def local_read_index(self) -> int | None:
        """See RawNode.local_read_index."""
        return None if self._stopped else self._rn.local_read_index()

    def status(self) -> Status:
        return self._rn.status()

    # Inspection for the application, on the loop between Readies (see RawNode).
    def last_index(self) -> int:
        return self._rn.last_index()

    def term(self, i: int) -> int:
        return self._rn.term(i)

    def election_elapsed(self) -> int:
        return self._rn.election_elapsed()

    def conf_change_pending(self) -> bool:
        return self._rn.conf_change_pending()

    def check_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        self._rn.check_conf_change(cc)

    def forget_leader(self) -> None:
        """A follower forgets its leader (etcd's ForgetLeader): see Raft.forget_leader."""
        if self._stopped:
            return
        self._rn.forget_leader()
        self._touch()

    def report_unreachable(self, node_id: int) -> None:
        if self._stopped:
            return
        self._rn.report_unreachable(node_id)
        self._touch()

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        if self._stopped:
            return
        self._rn.report_snapshot(node_id, status)
        self._touch()

    # -- output ----------------------------------------------------------------------------------
    async def ready(self) -> Ready:
        """Wait for the next Ready. Only one Ready is outstanding at a time: the
        previous one must be advanced first."""
        while True:
            self._check()
            if not self._outstanding and self._rn.has_ready():
                self._outstanding = True
                return self._rn.ready()
            self._changed.clear()
            await self._changed.wait()

    def persisted(self, rd: Ready) -> list[Message]:
        """See RawNode.persisted: the held acks of the outstanding Ready, to send now."""
        self._check()
        if not self._outstanding:
            raise RaftError("persisted() without an outstanding Ready")
        msgs = self._rn.persisted(rd)
        self._touch()
        return msgs

    def advance(self, rd: Ready) -> None:
        self._check()
        if not self._outstanding:
            raise RaftError("advance() without an outstanding Ready")
        self._outstanding = False
        self._rn.advance(rd)
        self._touch()

    async def stop(self) -> None:
        """Stop the node: pending and later calls raise NodeStoppedError."""
        self._stopped = True
        self._changed.set()
        # Let waiters observe the stop before returning.
        await asyncio.sleep(0)

    @property
    def stopped(self) -> bool:
        return self._stopped
