"""The seams of the replica: what ZeroNode is built against instead of the network, the
disk and the clock themselves.

ZeroNode takes a `PeerTransport`, a `WalStorage` and a `Clock` as parameters (zero/app.py
wires the real ones: zero/replica/transport.py over gRPC, raftcore's DiskStorage, the
system clock). A deterministic simulation of the whole daemon passes a simulated
network, disk and clock through the same three doors, as FoundationDB builds every
server against interfaces. The transport in turn sees the node only as a `PeerHost`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from raftcore import SnapshotStatus, Storage, raftpb

from zero.pb import raft_transport_pb2 as tpb
from zero.state.machine import ZeroState

__all__ = ["Clock", "SystemClock", "WalStorage", "PeerHost", "PeerTransport"]


class Clock(Protocol):
    """Time as the replica reads and waits on it: the tick timer, deadlines, backoffs,
    liveness (heard within), promotion windows, latency metrics."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for records people read (leader changes)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: time.monotonic (the default event loop's clock too) and asyncio.sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WalStorage(Storage, Protocol):
    """The node's durable log: raftcore's Storage read side, and the writes of the Ready
    loop. raftcore.wal.DiskStorage implements it. Writes run in the node's WAL thread,
    one at a time; `repaired` says whether opening it cut off a damaged tail. The node
    owns it once given: a failed start closes it, and stop() closes it (again: close is
    idempotent)."""

    @property
    def repaired(self) -> str | None: ...
    def save(self, hard_state: raftpb.HardState | None, entries: Sequence[raftpb.Entry],
             snapshot: raftpb.Snapshot | None = None, *, must_sync: bool = True) -> None: ...
    def create_snapshot(self, index: int, conf_state: raftpb.ConfState | None, data: bytes) -> raftpb.Snapshot: ...
    def compact(self, compact_index: int) -> None: ...
    def close(self) -> None: ...


class PeerHost(Protocol):
    """What a transport sees of its zero (ZeroNode implements it; tests pass fakes): its
    identity and state, and where to deliver what peers send."""

    @property
    def raft_id(self) -> int: ...
    @property
    def cluster_id(self) -> str: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def join_peers(self) -> Mapping[int, str]: ...
    def step_peer(self, msg: raftpb.Message) -> None: ...
    def report_unreachable(self, rid: int) -> None: ...
    def peer_lost(self, rid: int) -> None:
        """The connection to `rid` was reset or refused: its process is likely gone."""
        ...
    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None: ...
    def mark_removed(self, reason: str) -> None: ...


class PeerTransport(Protocol):
    """How a zero reaches the other zeros. `send` is called from the Ready loop and never
    blocks: a message it cannot deliver is dropped and reported through the host
    (report_unreachable / report_snapshot), as Raft expects of a lossy network."""

    def start(self, host: PeerHost) -> None:
        """Deliver what peers send to `host` from now on (before the node's Raft starts)."""
        ...

    def set_peers(self, addrs: Mapping[int, str]) -> None:
        """Make the outbound peers exactly `addrs` (raft id -> address, self excluded)."""
        ...

    def send(self, msg: raftpb.Message) -> None: ...

    async def join(self, peer: str, my_addr: str, raft_id: int, *, timeout: float) -> tpb.JoinClusterResponse:
        """Ask the cluster `peer` belongs to for membership (JoinCluster)."""
        ...

    def peer_addrs(self) -> dict[int, str]: ...
    def peer_up(self, rid: int) -> bool: ...
    def peer_down(self, rid: int) -> bool: ...
    def heard_within(self, rid: int, seconds: float) -> bool:
        """Whether something from peer `rid` was admitted within `seconds` (Clock.monotonic)."""
        ...

    @property
    def last_heard(self) -> Mapping[int, float]:
        """When (Clock.monotonic) something from each peer was last admitted."""
        ...

    async def stop(self) -> None: ...
