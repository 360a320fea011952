"""`zero datanode`: the reference data node — the example to copy when writing your own.

It keeps key/values per tablet (zero/datanode/store.py), talks to zero through
zero.client, and serves the DataNode gRPC service (proto/zero/pb/datanode.proto):

- Membership. It connects (joining --group, or one zero chooses; while no zero answers
  it keeps trying, so it may start before its zeros), heartbeats every
  second saying whether it leads its group, and watches the shard map. The leader rule:
  the lowest member id among the group's healthy members (itself counted as healthy).
  Note that this reference node does not replicate data between the members of a group:
  run one member per group (zero's default --replicas 1).
- Put/Get. A write goes through when the tablet is owned by this group, is not
  read-only, and is not fenced here; an unowned tablet is claimed on first write
  (ShouldServe for this group). Anything else is FAILED_PRECONDITION naming the owner.
  Reads are served for tablets this group owns.
- Sizes. Every --size-interval the leader reports the sizes of the tablets its group
  owns (UpdateTabletSizes); zero's rebalancer plans with them.

A tablet move (zero drives it, zero/leader/moves.py; every call carries the move id, and an id
older than the newest this node saw for the tablet is refused):

  source  MoveTablet:    fence the tablet (new writes are refused from here on), wait
                         for writes in flight, then stream a copy to the destination
                         with ReceiveTablet; answer once the destination acknowledged
                         the last chunk. A write either finished before the fence (it is
                         in the copy) or is refused: none is lost.
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
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import grpc
import structlog

from zero import security
from zero.state import validate
from zero.rpc import RECONNECT_OPTIONS
from zero.client import RETRYABLE, ZeroClient
from zero.datanode.store import TabletStore
from zero.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError, ZeroError
from zero.pb import datanode_pb2, datanode_pb2_grpc, zero_pb2
from zero.rpc import status_of

__all__ = ["DataNode", "DataNodeConfig", "run_datanode"]

GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                ("grpc.so_reuseport", 0)]
# Channels to other data nodes (a move's copy): a destination back from a few seconds
# down is dialled again at once, or every move to it is rolled back (zero/rpc.py).
CHANNEL_OPTIONS = [*GRPC_OPTIONS[:2], *RECONNECT_OPTIONS]


@dataclass(frozen=True, slots=True)
class DataNodeConfig:
    zero: tuple[str, ...]  # zero addresses
    addr: str  # HOST:PORT this node listens on and registers with zero
    group: int = 0  # 0: zero chooses
    data_dir: str | None = None  # None: in memory only
    heartbeat_interval: float = 1.0
    size_interval: float = 2.0
    fence_poll: float = 0.2  # how often a fenced tablet asks zero whether its move is over
    chunk_bytes: int = 1 << 20  # a copy is streamed in chunks of about this many bytes
    chunk_delay: float = 0.0  # pause between chunks (slows a copy down for demos and tests)
    log_format: str | None = None
    tls_dir: str | None = None  # mutual TLS to zero and between data nodes (zero/security/)


@dataclass(slots=True)
class _Fence:
    """Writes to a tablet are refused while this exists (set by MoveTablet)."""

    move_id: int
    move_ts: int
    over_at: int = 0  # the state version at which zero's state showed the move over
    owner_after: int = 0  # the tablet's owner in that state


def _logger(addr: str, fmt: str | None, stream: TextIO | None = None) -> Any:
    stream = stream or sys.stderr
    fmt = fmt or ("console" if stream.isatty() else "json")
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    return structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(20)).bind(datanode=addr)


def _grpc_errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn a raised ZeroError into the call's gRPC status (zero/frontdoor/server.py's table)."""
    async def call(self: DataNode, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(self, request, context)
        except ZeroError as e:
            await context.abort(*status_of(e))
        except grpc.aio.AioRpcError as e:  # a call this node made failed: pass its status on
            await context.abort(e.code(), e.details() or "")
    call.__name__ = fn.__name__
    return call


class DataNode(datanode_pb2_grpc.DataNodeServicer):
    def __init__(self, cfg: DataNodeConfig, *, log_stream: TextIO | None = None) -> None:
        self.cfg = cfg
        self.log = _logger(cfg.addr, cfg.log_format, log_stream)
        self.store = TabletStore(cfg.data_dir)
        # With --tls-dir: this node's certificate (OU=datanode) for zero and other data
        # nodes, and mutual TLS with role checks on its own DataNode service.
        self.tls = security.load_tls(cfg.tls_dir) if cfg.tls_dir else None
        self._creds = self.tls.channel_credentials() if self.tls is not None else None
        self.zc = ZeroClient(list(cfg.zero), retry_deadline=10.0, credentials=self._creds)
        self.member_id = 0
        self.group = 0
        self.port = 0
        self.addr = cfg.addr  # with the bound port once started (--addr may say port 0)
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._fences: dict[str, _Fence] = {}
        self._writers: dict[str, int] = {}  # writes in flight per tablet
        self._idle = asyncio.Condition()
        self._locks: dict[str, asyncio.Lock] = {}  # install/drop of a tablet, one at a time
        self._channels: dict[str, grpc.aio.Channel] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        tls = self.tls
        server = grpc.aio.server(options=GRPC_OPTIONS,
                                 interceptors=[security.RoleInterceptor(self.log)] if tls is not None else None)
        datanode_pb2_grpc.add_DataNodeServicer_to_server(self, server)
        self.port = (server.add_secure_port(self.cfg.addr, tls.server_credentials()) if tls is not None
                     else server.add_insecure_port(self.cfg.addr))
        if not self.port:
            raise UnavailableError(f"cannot listen on {self.cfg.addr}")
        await server.start()
        self._server = server
        addr = self.cfg.addr
        if addr.rpartition(":")[2] == "0":
            addr = f"{addr.rpartition(':')[0]}:{self.port}"
        self.addr = addr
        self.log = self.log.bind(datanode=addr)
        resp = await self._connect(addr)
        self.member_id, self.group = resp.member.id, resp.member.group_id
        self.zc.start_watch()
        await self.zc.wait_synced(timeout=30)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._every(self.cfg.heartbeat_interval, self._heartbeat), name="heartbeat"),
                       loop.create_task(self._every(self.cfg.size_interval, self._report_sizes), name="sizes"),
                       loop.create_task(self._every(self.cfg.fence_poll, self._check_fences), name="fences")]
        self.log.info("data node is running", addr=addr, member=self.member_id, group=self.group,
                      data_dir=self.cfg.data_dir, tablets=len(self.store.tablets()))

    async def _connect(self, addr: str) -> zero_pb2.ConnectResponse:
        """Join through zero, waiting for as long as no zero answers: a data node started
        together with its zeros (a whole cluster restarted) may have to wait for their
        election, and exiting would leave its tablets unserved. A refusal (the address
        taken by another member, say) is final."""
        while True:
            try:
                return await self.zc.connect(addr, group_id=self.cfg.group)
            except grpc.aio.AioRpcError as e:
                if e.code() not in (*RETRYABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                self.log.warning("no zero answers yet; still trying to join", zero=list(self.cfg.zero),
                                 error=e.details())
            await asyncio.sleep(self.cfg.heartbeat_interval)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(1.0)
        for ch in self._channels.values():
            await ch.close()
        await self.zc.close()

    async def _every(self, period: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await job()
            except (ZeroError, grpc.aio.AioRpcError, TimeoutError) as e:
                self.log.warning("background call to zero failed; retrying", job=job.__name__,
                                 error=str(e.details() if isinstance(e, grpc.aio.AioRpcError) else e))
            except Exception as e:  # a bug: say so loudly, keep the duty running
                self.log.error("background duty crashed; retrying", job=job.__name__, error=repr(e))
            await asyncio.sleep(period)

    # -- who serves what ------------------------------------------------------------------------
    def leads_group(self) -> bool:
        """The lowest member id among the group's healthy members leads (this node counts
        itself healthy: it is the one asking)."""
        st = self.zc.view.state
        group = st.groups.get(self.group) if st is not None else None
        ids = [self.member_id]
        if group is not None:
            ids += [m.id for m in group.members.values() if m.healthy and not m.learner]
        return min(ids) == self.member_id

    def _watched(self, name: str) -> zero_pb2.Tablet | None:
        gid = self.zc.group_for(name)
        st = self.zc.view.state
        if not gid or st is None:
            return None
        return st.groups[gid].tablets[name]

    async def _owner(self, name: str, *, claim: bool) -> zero_pb2.Tablet:
        """The tablet as the watched shard map has it; when the map has no owner, ask
        zero (claiming it for this group when `claim`): the map may lag behind a claim."""
        t = self._watched(name)
        if t is not None:
            return t
        return await self.zc.should_serve(name, self.group if claim else 0)

    def _refuse_unless_ours(self, name: str, t: zero_pb2.Tablet, *, write: bool) -> None:
        fence = self._fences.get(name)
        if fence is not None and fence.owner_after and fence.owner_after != self.group:
            raise FailedPreconditionError(f"tablet {name!r} moved to group {fence.owner_after} "
                                          f"(move {fence.move_id}); send requests there")
        if t.group_id != self.group:
            who = f"group {t.group_id}" if t.group_id else "no group"
            raise FailedPreconditionError(f"tablet {name!r} is served by {who}, not by group {self.group}")
        if write and (t.read_only or fence is not None):
            move = fence.move_id if fence is not None else "in progress"
            raise FailedPreconditionError(f"tablet {name!r} is read-only while it is being moved "
                                          f"(move {move}); its owner is group {t.group_id}; retry later")

    # -- the key-value API ----------------------------------------------------------------------
    @_grpc_errors
    async def Put(self, request: datanode_pb2.PutRequest, context: Any) -> datanode_pb2.PutResponse:
        name = validate.tablet_name(request.tablet)
        t = await self._owner(name, claim=True)
        # No await between this check and counting the write as in flight: a fence set
        # after the check waits for this write, one set before it refuses it.
        self._refuse_unless_ours(name, t, write=True)
        self._writers[name] = self._writers.get(name, 0) + 1
        try:
            if self.store.data_dir:
                await asyncio.to_thread(self.store.put, name, request.key, request.value)
            else:
                self.store.put(name, request.key, request.value)
        finally:
            self._writers[name] -= 1
            async with self._idle:
                self._idle.notify_all()
        return datanode_pb2.PutResponse()

    @_grpc_errors
    async def Get(self, request: datanode_pb2.GetRequest, context: Any) -> datanode_pb2.GetResponse:
        name = validate.tablet_name(request.tablet)
        t = await self._owner(name, claim=False)
        if not t.group_id:
            return datanode_pb2.GetResponse(found=False)
        self._refuse_unless_ours(name, t, write=False)
        value = self.store.get(name, request.key)
        return datanode_pb2.GetResponse(found=value is not None, value=value or b"")

    # -- moves: source ----------------------------------------------------------------------------
    def _check_move_id(self, name: str, move_id: int, what: str) -> None:
        ids = self.store.move_ids(name)
        if not move_id:
            raise InvalidArgumentError(f"{what} carries no move id")
        if move_id < ids.newest:
            raise FailedPreconditionError(f"{what} of tablet {name!r}: move id {move_id} is stale "
                                          f"(this node has seen move {ids.newest})")
        if move_id <= ids.dropped:
            raise FailedPreconditionError(f"{what} of tablet {name!r}: move {move_id} was dropped here")

    def _check_cluster(self, cluster_id: str) -> None:
        mine = self.zc.view.cluster_id
        if cluster_id and mine and cluster_id != mine:
            raise FailedPreconditionError(f"move from cluster {cluster_id!r}; this node is in {mine!r}")

    @_grpc_errors
    async def MoveTablet(self, cmd: datanode_pb2.MoveTabletCommand, context: Any) -> datanode_pb2.MoveTabletResult:
        name = validate.tablet_name(cmd.predicate)
        self._check_cluster(cmd.cluster_id)
        if cmd.src_group != self.group:
            raise FailedPreconditionError(f"this node is in group {self.group}, not the source group {cmd.src_group}")
        if not cmd.dst_addrs:
            raise InvalidArgumentError("the move names no destination address")
        self._check_move_id(name, cmd.move_id, "MoveTablet")
        self.store.move_ids(name).newest = cmd.move_id
        self.store.save_move_ids()
        self._fences[name] = _Fence(cmd.move_id, cmd.move_ts)
        async with self._idle:
            await self._idle.wait_for(lambda: self._writers.get(name, 0) == 0)
        pairs = self.store.items(name)
        size = sum(len(k) + len(v) for k, v in pairs)
        self.log.info("move: tablet fenced, copying", tablet=name, move=cmd.move_id, dst_group=cmd.dst_group,
                      keys=len(pairs), bytes=size)
        ack = await self._send_copy(cmd, pairs)
        if ack.keys != len(pairs):
            raise UnavailableError(f"the destination acknowledged {ack.keys} keys of {len(pairs)}")
        self.log.info("move: copy acknowledged by the destination", tablet=name, move=cmd.move_id)
        return datanode_pb2.MoveTabletResult(move_id=cmd.move_id, keys=len(pairs), size_bytes=size)

    async def _send_copy(self, cmd: datanode_pb2.MoveTabletCommand,
                         pairs: list[tuple[bytes, bytes]]) -> datanode_pb2.ReceiveTabletResponse:
        """Stream the copy to the first destination address that takes it."""
        async def chunks() -> AsyncIterator[datanode_pb2.TabletChunk]:
            seq, batch, size = 0, [], 0
            for i, (k, v) in enumerate(pairs):
                batch.append(datanode_pb2.KeyValue(key=k, value=v))
                size += len(k) + len(v)
                if size >= self.cfg.chunk_bytes and i + 1 < len(pairs):
                    yield self._chunk(cmd, seq, batch, last=False)
                    seq, batch, size = seq + 1, [], 0
                    if self.cfg.chunk_delay:
                        await asyncio.sleep(self.cfg.chunk_delay)
            yield self._chunk(cmd, seq, batch, last=True)

        last: grpc.aio.AioRpcError | None = None
        for addr in cmd.dst_addrs:
            stub = datanode_pb2_grpc.DataNodeStub(self._channel(addr))
            try:
                ack: datanode_pb2.ReceiveTabletResponse = await stub.ReceiveTablet(chunks())
                return ack
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
        assert last is not None
        raise last

    def _chunk(self, cmd: datanode_pb2.MoveTabletCommand, seq: int, pairs: list[datanode_pb2.KeyValue],
               *, last: bool) -> datanode_pb2.TabletChunk:
        return datanode_pb2.TabletChunk(move_id=cmd.move_id, predicate=cmd.predicate, src_group=cmd.src_group,
                                        move_ts=cmd.move_ts, seq=seq, pairs=pairs, last=last,
                                        cluster_id=cmd.cluster_id)

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = (
                grpc.aio.secure_channel(addr, self._creds, options=CHANNEL_OPTIONS) if self._creds is not None
                else grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS))
        return ch

    # -- moves: destination -----------------------------------------------------------------------
    @_grpc_errors
    async def ReceiveTablet(self, chunks: AsyncIterator[datanode_pb2.TabletChunk],
                            context: Any) -> datanode_pb2.ReceiveTabletResponse:
        first: datanode_pb2.TabletChunk | None = None
        staged: dict[bytes, bytes] = {}
        next_seq = 0
        async for chunk in chunks:
            if first is None:
                first = chunk
                name = validate.tablet_name(chunk.predicate)
                self._check_cluster(chunk.cluster_id)
                self._check_move_id(name, chunk.move_id, "ReceiveTablet")
                t = self._watched(name)
                if t is not None and t.group_id == self.group and not t.read_only:
                    raise FailedPreconditionError(f"tablet {name!r} is served by this group; refusing a copy")
                self.store.move_ids(name).newest = chunk.move_id
                self.store.save_move_ids()
                self.log.info("move: receiving a copy", tablet=name, move=chunk.move_id,
                              src_group=chunk.src_group)
            elif chunk.move_id != first.move_id or chunk.predicate != first.predicate:
                raise InvalidArgumentError("a copy's chunks must all name the same move and tablet")
            if chunk.seq != next_seq:
                raise InvalidArgumentError(f"chunk {chunk.seq} arrived out of order (expected {next_seq})")
            next_seq += 1
            # A drop (or a newer move) while the copy streams in ends it here.
            self._check_move_id(first.predicate, first.move_id, "ReceiveTablet")
            staged.update((kv.key, kv.value) for kv in chunk.pairs)
            if chunk.last:
                name = first.predicate
                async with self._lock(name):
                    self._check_move_id(name, first.move_id, "ReceiveTablet")
                    if self.store.data_dir:
                        await asyncio.to_thread(self.store.install, name, staged.items())
                    else:
                        self.store.install(name, staged.items())
                size = sum(len(k) + len(v) for k, v in staged.items())
                self.log.info("move: copy installed, served once zero commits the move", tablet=name,
                              move=first.move_id, keys=len(staged), bytes=size)
                return datanode_pb2.ReceiveTabletResponse(move_id=first.move_id, keys=len(staged), size_bytes=size)
        raise InvalidArgumentError("the copy ended before its last chunk")

    @_grpc_errors
    async def DropTablet(self, request: datanode_pb2.DropTabletRequest, context: Any) -> datanode_pb2.DropTabletResponse:
        name = validate.tablet_name(request.predicate)
        self._check_cluster(request.cluster_id)
        ids = self.store.move_ids(name)
        if not request.move_id:
            raise InvalidArgumentError("DropTablet carries no move id")
        if request.move_id < ids.newest:
            raise FailedPreconditionError(f"DropTablet of tablet {name!r}: move id {request.move_id} is stale "
                                          f"(this node has seen move {ids.newest})")
        t = self._watched(name)
        fence = self._fences.get(name)
        if t is not None and t.group_id == self.group and not t.read_only and fence is None:
            raise FailedPreconditionError(f"tablet {name!r} is served by this group; refusing to drop it")
        ids.newest = ids.dropped = request.move_id
        self.store.save_move_ids()
        async with self._lock(name):
            dropped = self.store.drop(name)
        self.log.info("move: copy dropped", tablet=name, move=request.move_id, had_data=dropped)
        return datanode_pb2.DropTabletResponse(dropped=dropped)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- background duties ------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        await self.zc.heartbeat(self.member_id, self.group, leader=self.leads_group())

    async def _report_sizes(self) -> None:
        if not self.leads_group():
            return
        sizes = {n: s for n, s in self.store.sizes().items() if self.zc.group_for(n) == self.group}
        if sizes:
            await self.zc.update_tablet_sizes(self.group, sizes)

    async def _check_fences(self) -> None:
        """Lift fences whose move is over (see the module doc)."""
        version = self.zc.view.version
        for name, fence in list(self._fences.items()):
            if fence.over_at and version >= fence.over_at:
                if self._fences.get(name) is fence:
                    del self._fences[name]
                    self.log.info("move: fence lifted", tablet=name, move=fence.move_id, owner=fence.owner_after)
        pending = [(n, f) for n, f in self._fences.items() if not f.over_at]
        if not pending:
            return
        st = await self.zc.get_state()  # linearizable, and begun after these fences were set
        for name, fence in pending:
            owner = next((gid for gid, g in st.groups.items() if name in g.tablets), 0)
            t = st.groups[owner].tablets[name] if owner else None
            moving = t is not None and owner == self.group and t.read_only and t.move_ts == fence.move_ts
            if not moving:
                fence.owner_after, fence.over_at = owner, st.version


async def run_datanode(cfg: DataNodeConfig) -> int:
    """Run until SIGTERM/SIGINT (also while still waiting for zero); the exit code."""
    try:
        node = DataNode(cfg)
    except ZeroError as e:  # an unusable --tls-dir
        print(f"zero datanode: cannot start: {e}", file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = loop.create_task(node.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while waiting for zero
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    elif (err := starting.exception()) is not None:
        if not isinstance(err, (ZeroError, grpc.aio.AioRpcError, TimeoutError, OSError)):
            raise err
        msg = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
        print(f"zero datanode: cannot start: {msg}", file=sys.stderr, flush=True)
        stopping.cancel()
        await node.stop()
        return 1
    await stopping
    node.log.info("data node stopping")
    await node.stop()
    return 0
