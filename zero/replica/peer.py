"""One outbound peer of the transport: a bounded queue, a link to the peer, and a snapshot
sender (zero/replica/snapshot_send.py, `Raft.SendSnapshot` over gRPC).

Each connection attempt starts with a gRPC handshake: a `Raft.Stream` of one empty
RaftBatch, admitted by the peer like any batch (cluster id, membership, removal), whose
answer names the peer's wire port in its trailing metadata (WIRE_PORT_KEY) when it
offers one. Then the link is either
- the peer wire (zero/replica/wire_link.py): framed RaftBatches over plain TCP (TLS with
  --tls-dir) to that port, written without awaiting: `enqueue()` schedules one flush per
  event-loop turn, which sends everything queued as one frame (a lone commit-only append
  waits up to COMMIT_HOLD for the append that supersedes it, as on the stream); or
- when the peer names no wire port (it sits behind a proxy or a port mapping, or is an
  older zero), or its wire port does not answer (a firewall that lets only the gRPC port
  through: logged, counted, tried again on a reconnect after WIRE_RETRY), one long-lived
  client stream (`Raft.Stream`), written by a task.

`Peer.enqueue()` is called from the Ready loop and never awaits. A full queue, or a peer
that is down (between reconnect attempts), drops the message and reports the peer
unreachable, so Raft falls back to probing it instead of assuming the message arrived.
A broken link reconnects after a jittered exponential backoff (on the injected clock and
random source); a write that does not complete within WRITE_TIMEOUT (a paused or
partitioned peer) breaks the link. A link that was up and is reset or closed by the peer
(its process is likely gone) is reported as lost (PeerHost.peer_lost). Peer up/down is
logged once per change, never once per failed attempt. The rules around it are in
zero/replica/transport.py.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Protocol

import grpc

from raftcore import SnapshotStatus, raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.net import split_addr
from zero.replica.ports import Clock, PeerHost
from zero.replica.snapshot_send import send_snapshot
from zero.replica.wire_link import WireLink
from zero.replica.wire_server import wire_errors
from zero.replica.wire_tls import WireTls
from zero.rpc import RECONNECT_OPTIONS

__all__ = ["Peer", "PeerOwner", "superseded_dropped", "refusal_name", "GRPC_OPTIONS", "PROTOCOL", "Refusal",
           "COMMIT_HOLD", "QUEUE_BYTES", "BATCH_BYTES", "WRITE_TIMEOUT", "WIRE_PORT_KEY"]

PROTOCOL = tpb.RAFT_PROTOCOL_V1
Refusal = tpb.RaftStreamResponse

QUEUE_BYTES = 64 << 20  # per peer; beyond this new messages are dropped
BATCH_BYTES = 3 << 20  # below gRPC's default 4 MiB message limit
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
CONNECT_TIMEOUT = 1.0
WRITE_TIMEOUT = 5.0
WIRE_RETRY = 60.0  # seconds on the gRPC stream after the wire port did not answer
# The trailing metadata of an admitted Raft.Stream that names the answering zero's wire port.
WIRE_PORT_KEY = "zero-peer-wire-port"
# A write on a gRPC stream takes 0.2-0.3 ms to complete in Python, and the next one waits
# for it. The commit-only append a leader sends after each commit would then delay the
# next write's append on a busy peer stream: it waits this long for a following append
# (which carries the newer commit index) to supersede it (Peer._take_batch).
COMMIT_HOLD = 0.001

# Options for peer channels and for the server the Raft service is registered on: larger
# messages than gRPC's default 4 MiB (snapshot chunks and batches stay below it anyway),
# and quick reconnects (zero/rpc.py) so gRPC's own backoff does not add to ours.
GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
_CHANNEL_OPTIONS = GRPC_OPTIONS + RECONNECT_OPTIONS + [
    # One connection per peer, not shared with other channels to the same address.
    ("grpc.use_local_subchannel_pool", 1),
]

_REASON = {v: k for k, v in tpb.RaftStreamResponse.Refusal.items()}


def refusal_name(refusal: int) -> str:
    """The name of a refusal code (its number when this zero does not know it)."""
    return _REASON.get(refusal, str(refusal))


class _Refused(Exception):
    def __init__(self, refusal: int, message: str) -> None:
        super().__init__(f"{refusal_name(refusal)}: {message}")
        self.refusal = refusal
        self.message = message


class PeerOwner(Protocol):
    """What a peer sees of its transport (Transport implements it)."""

    @property
    def host(self) -> PeerHost: ...
    @property
    def log(self) -> Logger: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def credentials(self) -> grpc.ChannelCredentials | None: ...
    @property
    def wire_tls(self) -> WireTls | None: ...
    @property
    def queue_messages(self) -> int: ...
    def refused_by_peer(self, peer: int, refusal: int, message: str) -> None: ...


def _commit_only(m: raftpb.Message) -> bool:
    return m.type == raftpb.MsgApp and not m.entries


def superseded_dropped(msgs: list[raftpb.Message]) -> list[raftpb.Message]:
    """`msgs` without the commit-only appends that a later append of the same term, with
    a commit index at least as high, makes redundant (dropping a message is always safe
    in Raft; this one only told the follower a commit index the later one tells too)."""
    if len(msgs) < 2:
        return msgs
    later: dict[int, int] = {}  # term -> highest commit of the appends after this point
    keep: list[raftpb.Message] = []
    for m in reversed(msgs):
        if m.type == raftpb.MsgApp:
            if not m.entries and later.get(m.term, -1) >= m.commit:
                continue
            later[m.term] = max(later.get(m.term, -1), m.commit)
        keep.append(m)
    keep.reverse()
    return keep


class Peer:
    """One remote zero: a bounded queue, a writer task on one stream, a snapshot sender."""

    def __init__(self, t: PeerOwner, rid: int, addr: str) -> None:
        self.t = t
        self.rid = rid
        self.addr = addr
        self.label = str(rid)
        self._sent_batches = t.metrics.peer_sent_batches.labels(self.label)
        self._queue_depth = t.metrics.peer_queue_depth.labels(self.label)
        self.queue: collections.deque[raftpb.Message] = collections.deque()
        self.queued_bytes = 0
        self.up: bool | None = None  # None until the first attempt ends either way
        self.accepting = True  # False while down between attempts: messages are dropped
        self._wake = asyncio.Event()
        self._closed = False
        self._snap_task: asyncio.Task[None] | None = None
        self._link: WireLink | None = None  # while the wire is the link
        self._flush_pending = False
        self._hold: asyncio.TimerHandle | None = None  # a flush held for a lone commit-only append
        self._channel: grpc.aio.Channel | None = None
        self._channel_creds: grpc.ChannelCredentials | None = None  # what _channel was made with
        self._retired: list[grpc.aio.Channel] = []  # made with credentials replaced since
        self._down_reason = ""
        self._was_up = False  # the current attempt got a batch through (resets the backoff)
        self._wire_retry_at = 0.0  # on the clock: no wire attempt before (its port did not answer)
        t.metrics.peer_up.labels(self.label).set(0)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"zero-peer-{rid}")

    # -- queue ---------------------------------------------------------------------------------
    def enqueue(self, msg: raftpb.Message) -> None:
        size = msg.ByteSize()
        if (not self.accepting or len(self.queue) >= self.t.queue_messages
                or self.queued_bytes + size > QUEUE_BYTES):
            self._drop(1)
            return
        self.queue.append(msg)
        self.queued_bytes += size
        if self._link is None:
            self._wake.set()
        elif self._flush_pending:
            if self._hold is not None and not _commit_only(msg):  # the append a held commit waited for
                self._hold.cancel()
                self._hold = None
                asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._flush_pending = True
            loop = asyncio.get_running_loop()
            if _commit_only(msg) and all(_commit_only(m) for m in self.queue):
                # As on the gRPC stream (COMMIT_HOLD): the next write's append, due
                # within a loop turn or two, carries this commit index too and
                # supersedes it; sent alone, it costs the follower a Ready of its own
                # ahead of that append.
                self._hold = loop.call_later(COMMIT_HOLD, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        """The wire: send everything queued, one frame per batch (called once per loop turn)."""
        self._flush_pending = False
        self._hold = None
        link = self._link
        if link is None or link.paused or link.closing:
            return  # paused: resume_writing flushes again
        while self.queue:
            link.write(self._take_batch().SerializeToString())
            self._sent_batches.inc()

    def _drop(self, n: int) -> None:
        self.t.metrics.peer_dropped.labels(self.label).inc(n)
        self.t.host.report_unreachable(self.rid)

    def _take_batch(self) -> tpb.RaftBatch:
        t = self.t
        node = t.host
        batch = tpb.RaftBatch(protocol=PROTOCOL, cluster_id=node.cluster_id, from_id=node.raft_id, to_id=self.rid)
        out: list[raftpb.Message] = []
        size = 0
        q = self.queue
        while q and (not out or size < BATCH_BYTES):
            m = q.popleft()
            size += m.ByteSize()
            out.append(m)
        self.queued_bytes = max(0, self.queued_bytes - size) if q else 0
        batch.messages.extend(superseded_dropped(out))
        self._queue_depth.set(len(q))
        return batch

    # -- connection ------------------------------------------------------------------------------
    def _get_channel(self) -> grpc.aio.Channel:
        creds = self.t.credentials
        if self._channel is not None and creds is not self._channel_creds:
            # Reloaded certificates (zero/security/outbound.py): a gRPC channel keeps the
            # credentials it was made with, also when it reconnects, so the next
            # attempt (or snapshot) goes over a new channel; calls open on the old one
            # finish there, and it is closed with the peer.
            self._retired.append(self._channel)
            self._channel = None
        if self._channel is None:
            self._channel_creds = creds
            if creds is not None:
                self._channel = grpc.aio.secure_channel(self.addr, creds, options=_CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(self.addr, options=_CHANNEL_OPTIONS)
        return self._channel

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                await self._attempt()
                reason = "stream closed"
            except asyncio.CancelledError:
                raise
            except _Refused as r:
                reason = str(r)
                self.t.refused_by_peer(self.rid, r.refusal, r.message)
            except grpc.aio.AioRpcError as e:
                reason = f"{e.code().name}: {e.details()}"
                if e.code() == grpc.StatusCode.UNAVAILABLE and self._was_up:
                    # Reset by the peer's kernel (its process is gone), not timed out
                    # (paused or cut off): a follower need not wait out its election
                    # timeout for a dead leader (zero/replica/failover.py).
                    self.t.host.peer_lost(self.rid)
            except (TimeoutError, asyncio.TimeoutError):
                reason = "timed out"
            except Exception as e:  # grpc raises assorted errors on a broken stream
                reason = repr(e)
            if self._closed:
                break
            self._set_down(reason)
            attempt = 0 if self._was_up else attempt + 1
            # Full jitter (AWS architecture blog): peers restarting together spread out.
            delay = self.t.rng.uniform(BACKOFF_MIN, min(BACKOFF_MAX, BACKOFF_MIN * (2 ** attempt)))
            await self.t.clock.sleep(delay)
            self.accepting = True

    async def _attempt(self) -> None:
        """One connection: the gRPC handshake, then the wire or the gRPC stream."""
        ch = self._get_channel()
        self._was_up = False
        await asyncio.wait_for(ch.channel_ready(), CONNECT_TIMEOUT)
        port = await self._handshake(ch)
        if not port or self.t.clock.monotonic() < self._wire_retry_at or not await self._wire(port):
            await self._stream(ch)

    async def _handshake(self, ch: grpc.aio.Channel) -> int:
        """An empty batch over Raft.Stream: admitted, or the peer's refusal raised; the wire
        port the answer names (0: none)."""
        node = self.t.host
        call = tgrpc.RaftStub(ch).Stream(timeout=WRITE_TIMEOUT)
        await call.write(tpb.RaftBatch(protocol=PROTOCOL, cluster_id=node.cluster_id, from_id=node.raft_id,
                                       to_id=self.rid))
        await call.done_writing()
        resp = await call
        if resp.refusal != Refusal.ACCEPTED:
            raise _Refused(resp.refusal, resp.message)
        for key, value in await call.trailing_metadata() or ():
            if key == WIRE_PORT_KEY:
                return int(value)
        return 0

    async def _wire(self, port: int) -> bool:
        """Serve the queue over the peer wire until the connection ends (raises); False
        when the wire port does not answer, so the gRPC stream serves this attempt."""
        host = split_addr(self.addr)[0]
        ctx = self.t.wire_tls.client_context() if self.t.wire_tls is not None else None
        link = WireLink(self._flush)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: link, host, port, ssl=ctx, server_hostname=host if ctx is not None else None),
                CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:  # refused, unreachable, dropped (TLS errors are OSErrors too)
            self._wire_retry_at = self.t.clock.monotonic() + WIRE_RETRY
            wire_errors(self.t.metrics).labels("unreachable").inc()
            self.t.log.warning("peer wire unreachable; this link uses the gRPC stream", peer=self.rid,
                               addr=self.addr, wire_port=port, error=repr(e), retry_in_s=WIRE_RETRY)
            return False
        self._link = link
        try:
            self._set_up()
            self._flush()
            while not self._closed and not link.ended.done():
                await asyncio.wait({link.ended}, timeout=1.0)
                if link.paused_since is not None and time.monotonic() - link.paused_since > WRITE_TIMEOUT:
                    link.close("timed out", abort=True)
                    raise TimeoutError
        finally:
            self._link = None
            if not link.ended.done():
                link.close("closing", abort=True)
        if link.refusal is not None:
            raise _Refused(link.refusal.refusal, link.refusal.message)
        if link.lost and not self._closed:
            # Reset or closed by the peer (its process is gone), not timed out
            # (paused or cut off): see zero/replica/failover.py.
            self.t.host.peer_lost(self.rid)
        raise ConnectionError(link.error or "the wire connection ended")

    async def _stream(self, ch: grpc.aio.Channel) -> None:
        stub = tgrpc.RaftStub(ch)
        call = stub.Stream()
        call.add_done_callback(lambda _c: self._wake.set())
        try:
            while not self._closed:
                if call.done():
                    await self._finish(call)
                    return
                if not self.queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if all(_commit_only(m) for m in self.queue):
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(COMMIT_HOLD):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                batch = self._take_batch()
                try:
                    async with asyncio.timeout(WRITE_TIMEOUT):  # cheaper than wait_for: no extra task
                        await call.write(batch)
                except (TimeoutError, asyncio.TimeoutError):
                    self._drop(len(batch.messages))
                    raise
                except Exception:
                    self._drop(len(batch.messages))
                    await self._finish(call)
                    raise
                self._sent_batches.inc()
                self._set_up()
        finally:
            if not call.done():
                call.cancel()

    async def _finish(self, call: grpc.aio.StreamUnaryCall[tpb.RaftBatch, tpb.RaftStreamResponse]) -> None:
        """The stream ended: raise the peer's refusal, or its error."""
        try:
            resp = await asyncio.wait_for(call, 1.0)
        except grpc.aio.AioRpcError:
            raise
        except asyncio.CancelledError:
            if self._closed:
                raise
            return
        if resp.refusal != Refusal.ACCEPTED:
            raise _Refused(resp.refusal, resp.message)

    def _set_up(self) -> None:
        self._was_up = True
        if self.up is not True:
            self.up = True
            self.t.metrics.peer_up.labels(self.label).set(1)
            self.t.log.info("peer up", peer=self.rid, addr=self.addr, link="wire" if self._link is not None else "grpc")

    def _set_down(self, reason: str) -> None:
        self.accepting = False
        dropped = len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self._queue_depth.set(0)
        if dropped:
            self._drop(dropped)
        else:
            self.t.host.report_unreachable(self.rid)
        # Log the change to down once; while down, only a new refusal is worth a line
        # (e.g. an unreachable peer that comes back as a member of another cluster).
        refused = reason.split(":")[0] if reason.split(":")[0] in _REASON.values() else ""
        if self.up is not False or (refused and refused != self._down_reason):
            self.t.log.warning("peer down", peer=self.rid, addr=self.addr, reason=reason)
        self.up = False
        self._down_reason = refused
        self.t.metrics.peer_up.labels(self.label).set(0)

    # -- snapshots -------------------------------------------------------------------------------
    def send_snapshot(self, msg: raftpb.Message) -> None:
        if self._snap_task is not None and not self._snap_task.done():
            # Raft sends one snapshot at a time per follower; a second one means the
            # first is stale. Let the running transfer finish and report this one failed.
            self.t.host.report_snapshot(self.rid, SnapshotStatus.FAILURE)
            return
        self._snap_task = asyncio.get_running_loop().create_task(
            send_snapshot(self.t, self.rid, self._get_channel(), msg, PROTOCOL), name=f"zero-snapshot-to-{self.rid}")

    # -- shutdown --------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._wake.set()  # Python 3.11's wait_for can swallow a cancel: the loops check _closed too
        self._task.cancel()
        if self._snap_task is not None:
            self._snap_task.cancel()
        self.t.metrics.peer_up.labels(self.label).set(0)
        self._queue_depth.set(0)

    async def wait_closed(self) -> None:
        for task in (self._task, self._snap_task):
            if task is not None:
                try:
                    await task
                except BaseException:
                    pass
        for ch in [*self._retired, *([self._channel] if self._channel is not None else [])]:
            await ch.close()
