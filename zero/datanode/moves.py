"""A data node's part in tablet moves: the source's fence and copy, the destination's
staging and install, drops, and lifting fences once zero's state shows the move over.

A tablet move (zero drives it, zero/leader/driver.py; every call carries the move id, and
an id older than the newest this node saw for the tablet is refused):

  source  MoveTablet:    fence the tablet (new writes are refused from here on), wait
                         for writes in flight, settle the transactions holding writes to
                         it (each aborted with TryAbort unless decided already; the
                         commits applied), then stream a copy of every version kept to
                         the destination with ReceiveTablet; answer once the destination
                         acknowledged the last chunk. A write either finished before the
                         fence (it is in the copy) or is refused, and no transaction can
                         commit a write to the tablet here afterwards: none is lost.
                         (A prewritten write is not carried over: zero fenced the tablet
                         before the call, so its transaction could only have committed
                         here before the fence — it is then applied — or, after a
                         rollback, later; settling decides it now instead.)
  dest.   ReceiveTablet: stage the chunks; at the last one install the copy. It is
                         served only once the shard map says this group owns the tablet
                         (zero committed the move) and it is not read-only.
  either  DropTablet:    forget the copy of that move (the source's after a commit, the
                         destination's partial copy after an abort); later chunks of a
                         dropped move are refused.

The source's fence is lifted only when the move is over: a linearizable read of zero's
state (taken after the fence was set, so it includes the move's start) shows the
tablet not being moved by this move any more, and the watched shard map has caught up
with that read. Until then the watched map may lag, so the fence is what refuses writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from zero.client import ZeroClient
from zero.datanode.store import TabletStore
from zero.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from zero.log import Logger
from zero.pb import datanode_pb2, datanode_pb2_grpc, zero_pb2
from zero.rpc import RECONNECT_OPTIONS, code_of
from zero.state import validate

__all__ = ["Fence", "MoveHost", "TabletMoves", "CHANNEL_OPTIONS"]

# Channels to other data nodes (a move's copy): a destination back from a few seconds
# down is dialled again at once, or every move to it is rolled back (zero/rpc.py).
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                   *RECONNECT_OPTIONS]


@dataclass(slots=True)
class Fence:
    """Writes to a tablet are refused while this exists (set by MoveTablet)."""

    move_id: int
    move_ts: int
    over_at: int = 0  # the state version at which zero's state showed the move over
    owner_after: int = 0  # the tablet's owner in that state


class MoveHost(Protocol):
    """What the moves read of their data node: its group (known once it joined), its
    logger (bound to its address once it listens), and the watched shard map."""

    @property
    def group(self) -> int: ...

    @property
    def log(self) -> Logger: ...

    def watched(self, name: str) -> zero_pb2.Tablet | None: ...
    async def settle(self, name: str) -> None: ...


class TabletMoves:
    """The fences, writes in flight and copy channels of one data node."""

    def __init__(self, host: MoveHost, store: TabletStore, zc: ZeroClient, *, creds: grpc.ChannelCredentials | None,
                 chunk_bytes: int, chunk_delay: float) -> None:
        self._host = host
        self._store = store
        self._zc = zc
        self._creds = creds
        self._chunk_bytes = chunk_bytes
        self._chunk_delay = chunk_delay
        self.fences: dict[str, Fence] = {}  # the tablets whose writes are refused
        self._writers: dict[str, int] = {}  # writes in flight per tablet
        self._idle = asyncio.Condition()
        self._locks: dict[str, asyncio.Lock] = {}  # install/drop of a tablet, one at a time
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    # -- writes and the fence ---------------------------------------------------------------------
    def begin_write(self, name: str) -> None:
        """Count a write to `name` as in flight (a fence set from now on waits for it).
        The caller checked the fence without an await in between."""
        self._writers[name] = self._writers.get(name, 0) + 1

    async def end_write(self, name: str) -> None:
        self._writers[name] -= 1
        async with self._idle:
            self._idle.notify_all()

    # -- source -------------------------------------------------------------------------------------
    def _check_move_id(self, name: str, move_id: int, what: str) -> None:
        ids = self._store.move_ids(name)
        if not move_id:
            raise InvalidArgumentError(f"{what} carries no move id")
        if move_id < ids.newest:
            raise FailedPreconditionError(f"{what} of tablet {name!r}: move id {move_id} is stale "
                                          f"(this node has seen move {ids.newest})")
        if move_id <= ids.dropped:
            raise FailedPreconditionError(f"{what} of tablet {name!r}: move {move_id} was dropped here")

    def _check_cluster(self, cluster_id: str) -> None:
        mine = self._zc.view.cluster_id
        if cluster_id and mine and cluster_id != mine:
            raise FailedPreconditionError(f"move from cluster {cluster_id!r}; this node is in {mine!r}")

    async def move_tablet(self, cmd: datanode_pb2.MoveTabletCommand) -> datanode_pb2.MoveTabletResult:
        name = validate.tablet_name(cmd.predicate)
        self._check_cluster(cmd.cluster_id)
        group = self._host.group
        if cmd.src_group != group:
            raise FailedPreconditionError(f"this node is in group {group}, not the source group {cmd.src_group}")
        if not cmd.dst_addrs:
            raise InvalidArgumentError("the move names no destination address")
        self._check_move_id(name, cmd.move_id, "MoveTablet")
        self._store.move_ids(name).newest = cmd.move_id
        self._store.save_move_ids()
        self.fences[name] = Fence(cmd.move_id, cmd.move_ts)
        async with self._idle:
            await self._idle.wait_for(lambda: self._writers.get(name, 0) == 0)
        await self._host.settle(name)
        versions = self._store.versions(name)
        size = sum(len(k) + len(v) for k, _, v in versions)
        self._host.log.info("move: tablet fenced, copying", tablet=name, move=cmd.move_id, dst_group=cmd.dst_group,
                            versions=len(versions), bytes=size)
        ack = await self._send_copy(cmd, versions)
        if ack.keys != len(versions):
            raise UnavailableError(f"the destination acknowledged {ack.keys} versions of {len(versions)}")
        self._host.log.info("move: copy acknowledged by the destination", tablet=name, move=cmd.move_id)
        return datanode_pb2.MoveTabletResult(move_id=cmd.move_id, keys=len(versions), size_bytes=size)

    async def _send_copy(self, cmd: datanode_pb2.MoveTabletCommand,
                         versions: list[tuple[bytes, int, bytes]]) -> datanode_pb2.ReceiveTabletResponse:
        """Stream the copy to the first destination address that takes it."""
        floor = self._store.floor

        async def chunks() -> AsyncIterator[datanode_pb2.TabletChunk]:
            seq, batch, size = 0, [], 0
            for i, (k, ts, v) in enumerate(versions):
                batch.append(datanode_pb2.KeyValue(key=k, value=v, commit_ts=ts))
                size += len(k) + len(v)
                if size >= self._chunk_bytes and i + 1 < len(versions):
                    yield self._chunk(cmd, seq, batch, last=False, floor=floor)
                    seq, batch, size = seq + 1, [], 0
                    if self._chunk_delay:
                        await asyncio.sleep(self._chunk_delay)
            yield self._chunk(cmd, seq, batch, last=True, floor=floor)

        last: grpc.aio.AioRpcError | None = None
        for addr in cmd.dst_addrs:
            stub = datanode_pb2_grpc.DataNodeStub(self.channel(addr))
            try:
                ack: datanode_pb2.ReceiveTabletResponse = await stub.ReceiveTablet(chunks())
                return ack
            except grpc.aio.AioRpcError as e:
                if code_of(e) != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
        assert last is not None
        raise last

    @staticmethod
    def _chunk(cmd: datanode_pb2.MoveTabletCommand, seq: int, pairs: list[datanode_pb2.KeyValue],
               *, last: bool, floor: int) -> datanode_pb2.TabletChunk:
        return datanode_pb2.TabletChunk(move_id=cmd.move_id, predicate=cmd.predicate, src_group=cmd.src_group,
                                        move_ts=cmd.move_ts, seq=seq, pairs=pairs, last=last,
                                        cluster_id=cmd.cluster_id, safe_ts=floor)

    def channel(self, addr: str) -> grpc.aio.Channel:
        """The channel to another data node (kept for the next copy to it)."""
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = (
                grpc.aio.secure_channel(addr, self._creds, options=CHANNEL_OPTIONS) if self._creds is not None
                else grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS))
        return ch

    # -- destination --------------------------------------------------------------------------------
    async def receive_tablet(self, chunks: AsyncIterator[datanode_pb2.TabletChunk]
                             ) -> datanode_pb2.ReceiveTabletResponse:
        store, log = self._store, self._host.log
        first: datanode_pb2.TabletChunk | None = None
        staged: list[tuple[bytes, int, bytes]] = []
        next_seq = 0
        async for chunk in chunks:
            if first is None:
                first = chunk
                name = validate.tablet_name(chunk.predicate)
                self._check_cluster(chunk.cluster_id)
                self._check_move_id(name, chunk.move_id, "ReceiveTablet")
                t = self._host.watched(name)
                if t is not None and t.group_id == self._host.group and not t.read_only:
                    raise FailedPreconditionError(f"tablet {name!r} is served by this group; refusing a copy")
                store.move_ids(name).newest = chunk.move_id
                store.save_move_ids()
                log.info("move: receiving a copy", tablet=name, move=chunk.move_id, src_group=chunk.src_group)
            elif chunk.move_id != first.move_id or chunk.predicate != first.predicate:
                raise InvalidArgumentError("a copy's chunks must all name the same move and tablet")
            if chunk.seq != next_seq:
                raise InvalidArgumentError(f"chunk {chunk.seq} arrived out of order (expected {next_seq})")
            next_seq += 1
            # A drop (or a newer move) while the copy streams in ends it here.
            self._check_move_id(first.predicate, first.move_id, "ReceiveTablet")
            staged.extend((kv.key, kv.commit_ts, kv.value) for kv in chunk.pairs)
            if chunk.last:
                name = first.predicate
                async with self._lock(name):
                    self._check_move_id(name, first.move_id, "ReceiveTablet")
                    # Reads below the source's floor are refused here too (versions
                    # hidden there may be missing from the copy).
                    if store.data_dir:
                        await asyncio.to_thread(store.raise_floor, chunk.safe_ts)
                        await asyncio.to_thread(store.install_versions, name, staged)
                    else:
                        store.raise_floor(chunk.safe_ts)
                        store.install_versions(name, staged)
                size = sum(len(k) + len(v) for k, _, v in staged)
                log.info("move: copy installed, served once zero commits the move", tablet=name,
                         move=first.move_id, keys=len(staged), bytes=size)
                return datanode_pb2.ReceiveTabletResponse(move_id=first.move_id, keys=len(staged), size_bytes=size)
        raise InvalidArgumentError("the copy ended before its last chunk")

    async def drop_tablet(self, request: datanode_pb2.DropTabletRequest) -> datanode_pb2.DropTabletResponse:
        name = validate.tablet_name(request.predicate)
        self._check_cluster(request.cluster_id)
        ids = self._store.move_ids(name)
        if not request.move_id:
            raise InvalidArgumentError("DropTablet carries no move id")
        if request.move_id < ids.newest:
            raise FailedPreconditionError(f"DropTablet of tablet {name!r}: move id {request.move_id} is stale "
                                          f"(this node has seen move {ids.newest})")
        t = self._host.watched(name)
        fence = self.fences.get(name)
        if t is not None and t.group_id == self._host.group and not t.read_only and fence is None:
            raise FailedPreconditionError(f"tablet {name!r} is served by this group; refusing to drop it")
        ids.newest = ids.dropped = request.move_id
        self._store.save_move_ids()
        async with self._lock(name):
            dropped = self._store.drop(name)
        self._host.log.info("move: copy dropped", tablet=name, move=request.move_id, had_data=dropped)
        return datanode_pb2.DropTabletResponse(dropped=dropped)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- lifting fences -------------------------------------------------------------------------------
    async def check_fences(self) -> None:
        """Lift fences whose move is over (see the module doc)."""
        version = self._zc.view.version
        for name, fence in list(self.fences.items()):
            if fence.over_at and version >= fence.over_at:
                if self.fences.get(name) is fence:
                    del self.fences[name]
                    self._host.log.info("move: fence lifted", tablet=name, move=fence.move_id,
                                        owner=fence.owner_after)
        pending = [(n, f) for n, f in self.fences.items() if not f.over_at]
        if not pending:
            return
        st = await self._zc.get_state()  # linearizable, and begun after these fences were set
        group = self._host.group
        for name, fence in pending:
            owner = next((gid for gid, g in st.groups.items() if name in g.tablets), 0)
            t = st.groups[owner].tablets[name] if owner else None
            moving = t is not None and owner == group and t.read_only and t.move_ts == fence.move_ts
            if not moving:
                fence.owner_after, fence.over_at = owner, st.version
