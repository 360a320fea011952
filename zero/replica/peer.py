"""One outbound peer of the transport: a bounded queue, a writer task on one long-lived
client stream (`Raft.Stream`), and a snapshot sender (`Raft.SendSnapshot`).

`Peer.enqueue()` is called from the Ready loop and never awaits: it appends to the
bounded queue and wakes the writer task, which sends everything queued as one
`RaftBatch` whenever the stream is writable. A full queue, or a peer that is down
(between reconnect attempts), drops the message and reports the peer unreachable, so
Raft falls back to probing it instead of assuming the message arrived. A broken stream
reconnects after a jittered exponential backoff (on the injected clock and random
source); a write that does not complete within WRITE_TIMEOUT (a paused or partitioned
peer) breaks the stream. Peer up/down is logged once per change, never once per failed
attempt. The rules around it are in zero/replica/transport.py.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator
from typing import Protocol

import google_crc32c
import grpc

from raftcore import SnapshotStatus, raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.replica.ports import Clock, PeerHost
from zero.rpc import RECONNECT_OPTIONS

__all__ = ["Peer", "PeerOwner", "superseded_dropped", "refusal_name", "GRPC_OPTIONS", "PROTOCOL", "Refusal",
           "COMMIT_HOLD", "QUEUE_BYTES", "BATCH_BYTES", "SNAPSHOT_CHUNK", "WRITE_TIMEOUT"]

PROTOCOL = tpb.RAFT_PROTOCOL_V1
Refusal = tpb.RaftStreamResponse

QUEUE_BYTES = 64 << 20  # per peer; beyond this new messages are dropped
BATCH_BYTES = 3 << 20  # below gRPC's default 4 MiB message limit
SNAPSHOT_CHUNK = 1 << 20
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
CONNECT_TIMEOUT = 1.0
WRITE_TIMEOUT = 5.0
SNAPSHOT_TIMEOUT = 120.0
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
        self._channel: grpc.aio.Channel | None = None
        self._channel_creds: grpc.ChannelCredentials | None = None  # what _channel was made with
        self._retired: list[grpc.aio.Channel] = []  # made with credentials replaced since
        self._down_reason = ""
        self._was_up = False  # the current attempt got a batch through (resets the backoff)
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
        self._wake.set()

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
                await self._stream()
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

    async def _stream(self) -> None:
        ch = self._get_channel()
        self._was_up = False
        await asyncio.wait_for(ch.channel_ready(), CONNECT_TIMEOUT)
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
            self.t.log.info("peer up", peer=self.rid, addr=self.addr)

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
        self._snap_task = asyncio.get_running_loop().create_task(self._send_snapshot(msg),
                                                                 name=f"zero-snapshot-to-{self.rid}")

    async def _send_snapshot(self, msg: raftpb.Message) -> None:
        t = self.t
        node = t.host
        data = msg.snapshot.data
        head = raftpb.Message()
        head.CopyFrom(msg)
        head.snapshot.data = b""
        total = len(data)
        crc = google_crc32c.value(data)

        async def chunks() -> AsyncIterator[tpb.SnapshotChunk]:
            off = 0
            first = True
            while first or off < total:
                piece = data[off:off + SNAPSHOT_CHUNK]
                last = off + len(piece) >= total
                c = tpb.SnapshotChunk(protocol=PROTOCOL, cluster_id=node.cluster_id, from_id=node.raft_id,
                                      to_id=self.rid, offset=off, data=piece, total_size=total, last=last)
                if first:
                    c.message.CopyFrom(head)
                if last:
                    c.crc32c = crc
                yield c
                off += len(piece)
                first = False

        ok = False
        try:
            stub = tgrpc.RaftStub(self._get_channel())
            t.log.info("sending snapshot", peer=self.rid, index=msg.snapshot.metadata.index, bytes=total)
            resp = await stub.SendSnapshot(chunks(), timeout=SNAPSHOT_TIMEOUT)
            if resp.refusal != Refusal.ACCEPTED:
                t.refused_by_peer(self.rid, resp.refusal, resp.message)
                t.log.warning("peer refused snapshot", peer=self.rid, reason=resp.message)
            ok = resp.applied
        except asyncio.CancelledError:
            node.report_snapshot(self.rid, SnapshotStatus.FAILURE)
            raise
        except Exception as e:
            t.log.warning("snapshot transfer failed", peer=self.rid, error=repr(e))
        t.metrics.snapshots_sent.labels("ok" if ok else "failed").inc()
        node.report_snapshot(self.rid, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE)

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
