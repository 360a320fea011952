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
  Reads are served for tablets this group owns. A Put is a transaction of one write
  committed through zero's oracle; a Get reads the newest version applied here (no
  timestamp: read-your-writes for Puts, not a snapshot).
- Transactions (zero/datanode/transactions.py, txn_service.py): versions by commit_ts,
  TxnGet at a timestamp, Prewrite; decisions applied from the Oracle stream; its
  heartbeats carry min_active_ts. zero/datanode/txn.py is the client.
- Sizes. Every --size-interval the leader reports the sizes of the tablets its group
  owns (UpdateTabletSizes); zero's rebalancer plans with them.

Tablet moves: zero/datanode/moves.py (the fence, the copy, drops).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeAlias, TypeVar, cast

import grpc
import structlog

from zero import security
from zero.client import RETRYABLE, ZeroClient
from zero.datanode.moves import TabletMoves
from zero.datanode.store import TabletStore
from zero.datanode.transactions import PENDING_CHECK, PENDING_TIMEOUT, READ_HOLD, Transactions
from zero.datanode.txn_service import TxnService
from zero.errors import FailedPreconditionError, UnavailableError, ZeroError
from zero.log import Logger
from zero.pb import datanode_pb2, datanode_pb2_grpc, zero_pb2
from zero.rpc import code_of, status_of
from zero.state import validate

__all__ = ["DataNode", "DataNodeConfig", "run_datanode"]

GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                ("grpc.so_reuseport", 0)]


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
    labels: tuple[tuple[str, str], ...] = ()  # --label KEY=VALUE: where it runs (zone, rack, host)
    read_wait: float = 10.0  # a transactional read waits this long for the oracle's watermark
    read_hold: float = READ_HOLD  # a read's start_ts stays in min_active_ts this long (unless decided)
    pending_check: float = PENDING_CHECK  # an undecided prewrite is looked up after this long
    pending_timeout: float = PENDING_TIMEOUT  # and aborted after this long
    txn_interval: float = 1.0  # how often those checks and garbage collection run


# A servicer context (gRPC's are generic in the messages).
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _logger(addr: str, fmt: str | None, stream: TextIO | None = None) -> Logger:
    stream = stream or sys.stderr
    fmt = fmt or ("console" if stream.isatty() else "json")
    renderer: structlog.typing.Processor = (structlog.processors.JSONRenderer() if fmt == "json"
                                            else structlog.dev.ConsoleRenderer())
    log = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(20))
    return cast(Logger, log).bind(datanode=addr)


def _grpc_errors(fn: Callable[[DataNode, Req, Context], Awaitable[Resp]]
                 ) -> Callable[[DataNode, Req, Context], Awaitable[Resp]]:
    """Turn a raised ZeroError into the call's gRPC status (zero.rpc.status_of, the one mapping)."""
    async def call(self: DataNode, request: Req, context: Context) -> Resp:
        try:
            return await fn(self, request, context)
        except ZeroError as e:
            await context.abort(*status_of(e))
        except grpc.aio.AioRpcError as e:  # a call this node made failed: pass its status on
            await context.abort(code_of(e), e.details() or "")
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
        self._tasks: list[asyncio.Task[None]] = []
        self.moves = TabletMoves(self, self.store, self.zc, creds=self._creds, chunk_bytes=cfg.chunk_bytes,
                                 chunk_delay=cfg.chunk_delay)
        self.txns = Transactions(self.store, self.zc, self.log, read_hold=cfg.read_hold,
                                 pending_check=cfg.pending_check, pending_timeout=cfg.pending_timeout)
        self.txn_service = TxnService(self, self.store, self.moves, self.txns, read_wait=cfg.read_wait)

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
                       loop.create_task(self._every(self.cfg.fence_poll, self._check_fences), name="fences"),
                       loop.create_task(self._sync_txns(), name="txn-sync")]
        self.log.info("data node is running", addr=addr, member=self.member_id, group=self.group,
                      data_dir=self.cfg.data_dir, tablets=len(self.store.tablets()))

    async def _connect(self, addr: str) -> zero_pb2.ConnectResponse:
        """Join through zero, waiting for as long as no zero answers: a data node started
        together with its zeros (a whole cluster restarted) may have to wait for their
        election, and exiting would leave its tablets unserved. A refusal (the address
        taken by another member, say) is final."""
        while True:
            try:
                return await self.zc.connect(addr, group_id=self.cfg.group, labels=dict(self.cfg.labels))
            except grpc.aio.AioRpcError as e:
                if code_of(e) not in (*RETRYABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
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
        await self.moves.close()
        await self.txns.close()
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

    def watched(self, name: str) -> zero_pb2.Tablet | None:
        """The tablet as the watched shard map has it (None: no owner there)."""
        gid = self.zc.group_for(name)
        st = self.zc.view.state
        if not gid or st is None:
            return None
        return st.groups[gid].tablets[name]

    async def tablet_owner(self, name: str, *, claim: bool) -> zero_pb2.Tablet:
        """The tablet as the watched shard map has it; when the map has no owner, ask
        zero (claiming it for this group when `claim`): the map may lag behind a claim."""
        t = self.watched(name)
        if t is not None:
            return t
        return await self.zc.should_serve(name, self.group if claim else 0)

    def refuse_unless_ours(self, name: str, t: zero_pb2.Tablet, *, write: bool) -> None:
        fence = self.moves.fences.get(name)
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
    async def Put(self, request: datanode_pb2.PutRequest, context: Context) -> datanode_pb2.PutResponse:
        await self.txn_service.put(validate.tablet_name(request.tablet), request.key, request.value)
        return datanode_pb2.PutResponse()

    @_grpc_errors
    async def Get(self, request: datanode_pb2.GetRequest, context: Context) -> datanode_pb2.GetResponse:
        name = validate.tablet_name(request.tablet)
        t = await self.tablet_owner(name, claim=False)
        if not t.group_id:
            return datanode_pb2.GetResponse(found=False)
        self.refuse_unless_ours(name, t, write=False)
        value = self.store.get(name, request.key)
        return datanode_pb2.GetResponse(found=value is not None, value=value or b"")

    # -- transactions (zero/datanode/txn_service.py) ----------------------------------------------
    @_grpc_errors
    async def TxnGet(self, request: datanode_pb2.TxnGetRequest, context: Context) -> datanode_pb2.TxnGetResponse:
        return await self.txn_service.txn_get(request)

    @_grpc_errors
    async def Prewrite(self, request: datanode_pb2.PrewriteRequest,
                       context: Context) -> datanode_pb2.PrewriteResponse:
        return await self.txn_service.prewrite(request)

    async def settle(self, name: str) -> None:
        """Before a move copies `name`: no write to it left undecided here."""
        await self.txns.settle(name)

    # -- tablet moves (zero/datanode/moves.py) ---------------------------------------------------
    @_grpc_errors
    async def MoveTablet(self, cmd: datanode_pb2.MoveTabletCommand, context: Context) -> datanode_pb2.MoveTabletResult:
        return await self.moves.move_tablet(cmd)

    @_grpc_errors
    async def ReceiveTablet(self, chunks: AsyncIterator[datanode_pb2.TabletChunk],
                            context: Context) -> datanode_pb2.ReceiveTabletResponse:
        return await self.moves.receive_tablet(chunks)

    @_grpc_errors
    async def DropTablet(self, request: datanode_pb2.DropTabletRequest,
                         context: Context) -> datanode_pb2.DropTabletResponse:
        return await self.moves.drop_tablet(request)

    # -- background duties ------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        await self.zc.heartbeat(self.member_id, self.group, leader=self.leads_group(),
                                min_active_ts=self.txns.min_active_ts())

    async def _sync_txns(self) -> None:
        """Join the Oracle stream (resolving the prewrites kept across a restart), then
        run the transactions' periodic duty."""
        while not self.txns.ready.is_set():
            try:
                await self.txns.sync()
            except (ZeroError, grpc.aio.AioRpcError, TimeoutError) as e:
                self.log.warning("cannot join the oracle's stream yet; retrying",
                                 error=str(e.details() if isinstance(e, grpc.aio.AioRpcError) else e))
                await asyncio.sleep(self.cfg.heartbeat_interval)
        await self._every(self.cfg.txn_interval, self.txns.check)

    async def _report_sizes(self) -> None:
        if not self.leads_group():
            return
        sizes = {n: s for n, s in self.store.sizes().items() if self.zc.group_for(n) == self.group}
        if sizes:
            await self.zc.update_tablet_sizes(self.group, sizes)

    async def _check_fences(self) -> None:
        await self.moves.check_fences()


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
