"""The peer transport between zeros: the `Raft` gRPC service (zero/pb/raft_transport.proto).

Outbound, one `_Peer` per remote zero owns a channel and one long-lived client stream
(`Raft.Stream`). `Transport.send()` is called from the Ready loop and never awaits: it
appends to the peer's bounded queue and wakes the peer's writer task, which sends
everything queued as one `RaftBatch` whenever the stream is writable. Rules:

- The Ready loop never blocks on a peer. A full queue, or a peer that is down (between
  reconnect attempts), drops the message and calls `report_unreachable`, so Raft falls
  back to probing that follower instead of assuming the message arrived.
- Messages are handed to the transport before the Ready's entries are persisted
  (zero/replica/node.py), and nothing on the send path does I/O, so heartbeats and appends
  never wait behind an fsync or an apply (thesis §10.2.1).
- A broken stream reconnects after a jittered exponential backoff; a write that does
  not complete within WRITE_TIMEOUT (a paused or partitioned peer) breaks the stream.
- MsgSnap goes over `SendSnapshot` in chunks (its own task per peer); the outcome is
  reported to Raft with `report_snapshot(FINISH|FAILURE)`.
- Peer up/down is logged once per change, never once per failed attempt.

Inbound, `RaftService` admits a batch only if it names this cluster, this node as the
receiver, and a sender that is a member and was not removed; every message of an
admitted batch is stepped at once with `step_nowait`. A refusal ends the stream with its
reason; a sender told REMOVED marks its node removed (`ZeroNode.removed`), and the app
exits on it.

A sender told CLUSTER_MISMATCH persistently is a zero whose cluster was re-created
(`zero run --force-new-cluster` on another zero: the new cluster has a new id and lists
this zero as removed). It exits the same way, with a message saying so and what to do,
but only on evidence no stray or misconfigured peer can fake alone: every refusal of a
peer counts only once it has repeated for MISMATCH_PERSIST seconds with nothing admitted
from that peer since, and then either a majority of the configured peers refuse so, or
every peer refuses so or is silent (no batch admitted from it for that long, and its
stream not taking ours): a zero that hears from any peer of its own cluster never stops.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

import google_crc32c
import grpc  # type: ignore[import-untyped]

from raftcore import RaftError, SnapshotStatus, raftpb

from zero.rpc import RECONNECT_OPTIONS
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.state.machine import ZeroState


__all__ = ["Transport", "PeerHost", "RaftHost", "RaftService", "add_raft_service", "GRPC_OPTIONS", "PROTOCOL", "Refusal"]

class PeerHost(Protocol):
    """What the transport sees of its zero (ZeroNode implements it; tests pass fakes):
    its identity and state, and where to deliver what peers send."""

    raft_id: int
    log: Any
    metrics: Any

    @property
    def cluster_id(self) -> str: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def join_peers(self) -> Mapping[int, str]: ...
    def step_peer(self, msg: raftpb.Message) -> None: ...
    def report_unreachable(self, rid: int) -> None: ...
    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None: ...
    def mark_removed(self, reason: str) -> None: ...


class RaftHost(PeerHost, Protocol):
    """What the Raft service sees: the peer host, its transport, and joining."""

    @property
    def raft_started(self) -> bool: ...
    @property
    def transport(self) -> Transport: ...
    async def handle_join(self, req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse: ...
    def leader_hint(self) -> list[tuple[str, str]]: ...


PROTOCOL = tpb.RAFT_PROTOCOL_V1
Refusal = tpb.RaftStreamResponse

QUEUE_MESSAGES = 4096  # per peer; beyond this new messages are dropped
QUEUE_BYTES = 64 << 20
BATCH_BYTES = 3 << 20  # below gRPC's default 4 MiB message limit
SNAPSHOT_CHUNK = 1 << 20
MAX_SNAPSHOT = 4 << 30
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
CONNECT_TIMEOUT = 1.0
WRITE_TIMEOUT = 5.0
SNAPSHOT_TIMEOUT = 120.0
# A write on a gRPC stream takes 0.2-0.3 ms to complete in Python, and the next one waits
# for it. The commit-only append a leader sends after each commit would then delay the
# next write's append on a busy peer stream: it waits this long for a following append
# (which carries the newer commit index) to supersede it (_take_batch).
COMMIT_HOLD = 0.001

# Options for peer channels and for the server the Raft service is registered on: larger
# messages than gRPC's default 4 MiB (snapshot chunks and batches stay below it anyway),
# and quick reconnects (zero/rpc.py) so gRPC's own backoff does not add to ours.
GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
_CHANNEL_OPTIONS = GRPC_OPTIONS + RECONNECT_OPTIONS + [
    # One connection per peer, not shared with other channels to the same address.
    ("grpc.use_local_subchannel_pool", 1),
]

_REASON = {v: k for k, v in tpb.RaftStreamResponse.Refusal.items()}

# CLUSTER_MISMATCH from a peer counts once it has lasted this long (seconds) over at least
# MISMATCH_REFUSALS refusals, with no batch admitted from that peer meanwhile and no gap
# of more than twice this long between two refusals.
MISMATCH_PERSIST = 5.0
MISMATCH_REFUSALS = 3
# The receiver's words in a CLUSTER_MISMATCH refusal (Transport.admit): its cluster id.
_THEIR_CLUSTER = re.compile(r"belongs to cluster (\S+?),")


class _Mismatch:
    """CLUSTER_MISMATCH refusals from one peer, since the last batch admitted from it."""

    __slots__ = ("first", "last", "count", "cluster_id")

    def __init__(self, now: float, cluster_id: str) -> None:
        self.first = self.last = now
        self.count = 0
        self.cluster_id = cluster_id


class _Refused(Exception):
    def __init__(self, refusal: int, message: str) -> None:
        super().__init__(f"{_REASON.get(refusal, refusal)}: {message}")
        self.refusal = refusal
        self.message = message


class Transport:
    """Every outbound peer of one ZeroNode, and the admission rules for inbound batches."""

    def __init__(self, node: PeerHost, *, queue_messages: int = QUEUE_MESSAGES,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self.node = node
        self.log = node.log
        self.metrics = node.metrics
        self.queue_messages = queue_messages
        self.credentials = credentials
        self._peers: dict[int, _Peer] = {}
        self._closed = False
        # Monotonic time of the last admitted batch from each peer: liveness for the
        # membership checks, which must not wait for Raft's CheckQuorum round.
        self.last_heard: dict[int, float] = {}
        self._mismatch: dict[int, _Mismatch] = {}  # peer -> its CLUSTER_MISMATCH refusals

    # -- peers ---------------------------------------------------------------------------------
    def set_peers(self, addrs: dict[int, str]) -> None:
        """Make the outbound peers exactly `addrs` (raft id -> HOST:PORT, self excluded).
        A peer whose address changed reconnects to the new one."""
        if self._closed:
            return
        me = self.node.raft_id
        for rid in [r for r in self._peers if r not in addrs or r == me]:
            self._peers.pop(rid).close()
            self.last_heard.pop(rid, None)
            self._mismatch.pop(rid, None)
        for rid, addr in addrs.items():
            if rid == me or not addr:
                continue
            p = self._peers.get(rid)
            if p is None:
                self._peers[rid] = _Peer(self, rid, addr)
            elif p.addr != addr:
                self.log.info("peer address changed", peer=rid, old=p.addr, new=addr)
                p.close()
                self._peers[rid] = _Peer(self, rid, addr)

    def peer_addrs(self) -> dict[int, str]:
        return {rid: p.addr for rid, p in self._peers.items()}

    def peer_up(self, rid: int) -> bool:
        p = self._peers.get(rid)
        return p is not None and p.up is True

    def peer_down(self, rid: int) -> bool:
        p = self._peers.get(rid)
        return p is not None and p.up is False

    def heard_within(self, rid: int, seconds: float) -> bool:
        t = self.last_heard.get(rid)
        return t is not None and time.monotonic() - t <= seconds

    async def stop(self) -> None:
        self._closed = True
        peers = list(self._peers.values())
        self._peers.clear()
        for p in peers:
            p.close()
        await asyncio.gather(*(p.wait_closed() for p in peers), return_exceptions=True)

    # -- sending (called from the Ready loop: never awaits) ---------------------------------------
    def send(self, msg: raftpb.Message) -> None:
        p = self._peers.get(msg.to)
        if p is None:
            self.node.report_unreachable(msg.to)
            if msg.type == raftpb.MsgSnap:
                self.node.report_snapshot(msg.to, SnapshotStatus.FAILURE)
            return
        if msg.type == raftpb.MsgSnap:
            p.send_snapshot(msg)
        else:
            p.enqueue(msg)

    # -- receiving -------------------------------------------------------------------------------
    def admit(self, protocol: int, cluster_id: str, from_id: int, to_id: int) -> tuple[Any, str]:
        """(ACCEPTED, "") or a refusal with a reason a person understands."""
        node = self.node
        if protocol != PROTOCOL:
            return Refusal.UNSUPPORTED_PROTOCOL, f"peer protocol {protocol} is not supported (this zero speaks {PROTOCOL})"
        mine = node.cluster_id
        if not mine:
            # Bootstrapped a moment ago (the id is not minted yet) or restarting: we
            # cannot tell whether the sender is one of ours, so we take nothing.
            return Refusal.NOT_A_MEMBER, f"zero {node.raft_id} does not know its cluster id yet"
        if cluster_id != mine:
            return Refusal.CLUSTER_MISMATCH, (f"zero {node.raft_id} belongs to cluster {mine}, "
                                              f"the sender {from_id} to cluster {cluster_id or '(none)'}")
        if to_id != node.raft_id:
            return Refusal.NOT_A_MEMBER, f"this is zero {node.raft_id}, not {to_id}"
        state = node.state
        if state.is_removed(from_id, zero=True):
            return Refusal.REMOVED, f"zero {from_id} was removed from cluster {mine}; a removed id never rejoins"
        zeros = state.zeros
        # A joiner that has not caught up yet has no members in its state: the cluster
        # id (a random UUID) is what it has to go on.
        if zeros and from_id not in zeros and from_id not in node.join_peers:
            return Refusal.NOT_A_MEMBER, f"zero {from_id} is not a member of cluster {mine}"
        return Refusal.ACCEPTED, ""

    def deliver(self, from_id: int, messages: Any) -> None:
        """Step each message now, in order (runs on the event loop, between Readies)."""
        self.last_heard[from_id] = time.monotonic()
        self._mismatch.pop(from_id, None)  # it names our cluster
        node = self.node
        for m in messages:
            try:
                node.step_peer(m)
            except RaftError as e:  # e.g. a forwarded proposal with no leader: the proposer retries
                self.log.debug("peer message not stepped", peer=from_id, type=m.type, error=str(e))

    def refused_by_peer(self, peer: int, refusal: int, message: str) -> None:
        self.metrics.peer_refusals.labels(str(peer), _REASON.get(refusal, str(refusal))).inc()
        if refusal == Refusal.REMOVED:
            self.node.mark_removed(f"zero {peer} says: {message}")
        elif refusal == Refusal.CLUSTER_MISMATCH:
            self._refused_as_foreign(peer, message)
        else:
            self._mismatch.pop(peer, None)

    def _refused_as_foreign(self, peer: int, message: str) -> None:
        """Peer `peer` says we belong to another cluster. When that is persistent and
        shared (see the module doc), this zero's cluster was re-created without it: it
        stops, as a removed zero does, saying what happened and what to do."""
        now = time.monotonic()
        m = self._mismatch.get(peer)
        found = _THEIR_CLUSTER.search(message)
        theirs = found.group(1) if found else ""
        if (m is None or now - m.last > 2 * MISMATCH_PERSIST  # a new episode, not a continued one
                or (theirs and m.cluster_id and theirs != m.cluster_id)):
            m = self._mismatch[peer] = _Mismatch(now, theirs)
        m.last = now
        m.count += 1
        peers = set(self._peers)
        if not peers:
            return
        foreign = {rid for rid, x in self._mismatch.items()
                   if rid in peers and x.count >= MISMATCH_REFUSALS and now - x.first >= MISMATCH_PERSIST
                   and now - x.last <= 2 * MISMATCH_PERSIST}
        if not foreign:
            return
        majority = len(foreign) >= len(peers) // 2 + 1
        # Silent: nothing admitted from it lately, and its stream is not taking our batches.
        silent = all(rid in foreign or not (self.heard_within(rid, MISMATCH_PERSIST) or self.peer_up(rid))
                     for rid in peers)
        if not (majority or silent):
            return
        mine = self.node.cluster_id
        ids = sorted({self._mismatch[rid].cluster_id for rid in foreign} - {""})
        names = ", ".join(f"zero {rid}" for rid in sorted(foreign))
        self.node.mark_removed(
            f"this zero (raft id {self.node.raft_id}) belongs to cluster {mine or '(none)'}, but {names} "
            f"({len(foreign)} of its {len(peers)} peers) {'belongs' if len(foreign) == 1 else 'belong'} to cluster "
            f"{' / '.join(ids) or '(another)'} and refused its messages for over {MISMATCH_PERSIST:g}s: the "
            f"cluster was most likely forced anew "
            f"(zero run --force-new-cluster on another zero), which removed this zero. Start it with a fresh "
            f"data dir and --peer HOST:PORT of a zero of the new cluster to join that cluster (its old data dir "
            f"cannot rejoin)")


def _commit_only(m: raftpb.Message) -> bool:
    return m.type == raftpb.MsgApp and not m.entries


def _superseded_dropped(msgs: list[raftpb.Message]) -> list[raftpb.Message]:
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


class _Peer:
    """One remote zero: a bounded queue, a writer task on one stream, a snapshot sender."""

    def __init__(self, t: Transport, rid: int, addr: str) -> None:
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
        self.t.node.report_unreachable(self.rid)

    def _take_batch(self) -> tpb.RaftBatch:
        t = self.t
        node = t.node
        batch = tpb.RaftBatch(protocol=PROTOCOL, cluster_id=node.cluster_id, from_id=node.raft_id, to_id=self.rid)
        out: list[raftpb.Message] = []
        size = 0
        q = self.queue
        while q and (not out or size < BATCH_BYTES):
            m = q.popleft()
            size += m.ByteSize()
            out.append(m)
        self.queued_bytes = max(0, self.queued_bytes - size) if q else 0
        batch.messages.extend(_superseded_dropped(out))
        self._queue_depth.set(len(q))
        return batch

    # -- connection ------------------------------------------------------------------------------
    def _get_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self.t.credentials is not None:
                self._channel = grpc.aio.secure_channel(self.addr, self.t.credentials, options=_CHANNEL_OPTIONS)
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
            except (TimeoutError, asyncio.TimeoutError):
                reason = "timed out"
            except Exception as e:  # grpc raises assorted errors on a broken stream
                reason = repr(e)
            if self._closed:
                break
            self._set_down(reason)
            attempt = 0 if self._was_up else attempt + 1
            # Full jitter (AWS architecture blog): peers restarting together spread out.
            delay = random.uniform(BACKOFF_MIN, min(BACKOFF_MAX, BACKOFF_MIN * (2 ** attempt)))
            await asyncio.sleep(delay)
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

    async def _finish(self, call: Any) -> None:
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
            self.t.node.report_unreachable(self.rid)
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
            self.t.node.report_snapshot(self.rid, SnapshotStatus.FAILURE)
            return
        self._snap_task = asyncio.get_running_loop().create_task(self._send_snapshot(msg),
                                                                 name=f"zero-snapshot-to-{self.rid}")

    async def _send_snapshot(self, msg: raftpb.Message) -> None:
        t = self.t
        node = t.node
        data = msg.snapshot.data
        head = raftpb.Message()
        head.CopyFrom(msg)
        head.snapshot.data = b""
        total = len(data)
        crc = google_crc32c.value(data)

        async def chunks():  # type: ignore[no-untyped-def]
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
        if self._channel is not None:
            await self._channel.close()


class RaftService(tgrpc.RaftServicer):
    """The inbound side: peer batches, snapshot chunks, and JoinCluster."""

    def __init__(self, node: RaftHost) -> None:
        self.node = node

    async def _check_started(self, context: Any) -> Transport:
        if not self.node.raft_started:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"zero {self.node.raft_id or '?'} has not started raft yet")
        return self.node.transport

    async def Stream(self, request_iterator: Any, context: Any) -> tpb.RaftStreamResponse:
        t = await self._check_started(context)
        n = 0
        async for batch in request_iterator:
            refusal, why = t.admit(batch.protocol, batch.cluster_id, batch.from_id, batch.to_id)
            if refusal != Refusal.ACCEPTED:
                self.node.log.debug("refused peer stream", peer=batch.from_id, reason=why)
                return tpb.RaftStreamResponse(refusal=refusal, message=why, batches=n)
            n += 1
            t.deliver(batch.from_id, batch.messages)
        return tpb.RaftStreamResponse(batches=n)

    async def Send(self, request: tpb.RaftBatch, context: Any) -> tpb.RaftStreamResponse:
        t = await self._check_started(context)
        refusal, why = t.admit(request.protocol, request.cluster_id, request.from_id, request.to_id)
        if refusal != Refusal.ACCEPTED:
            return tpb.RaftStreamResponse(refusal=refusal, message=why)
        t.deliver(request.from_id, request.messages)
        return tpb.RaftStreamResponse(batches=1)

    async def SendSnapshot(self, request_iterator: Any, context: Any) -> tpb.SnapshotChunkResponse:
        t = await self._check_started(context)
        m = self.node.metrics
        head: raftpb.Message | None = None
        buf = bytearray()
        total = 0
        from_id = 0
        async for c in request_iterator:
            if head is None:
                refusal, why = t.admit(c.protocol, c.cluster_id, c.from_id, c.to_id)
                if refusal != Refusal.ACCEPTED:
                    m.snapshots_received.labels("refused").inc()
                    return tpb.SnapshotChunkResponse(refusal=refusal, message=why)
                if not c.HasField("message") or c.message.type != raftpb.MsgSnap:
                    return self._bad("the first snapshot chunk carries no MsgSnap")
                if c.total_size > MAX_SNAPSHOT:
                    return self._bad(f"snapshot of {c.total_size} bytes is over the {MAX_SNAPSHOT}-byte limit")
                head = raftpb.Message()
                head.CopyFrom(c.message)
                total = c.total_size
                from_id = c.from_id
            if c.offset != len(buf) or len(buf) + len(c.data) > total:
                return self._bad(f"snapshot chunk at offset {c.offset} does not follow {len(buf)} of {total} bytes")
            buf += c.data
            if c.last:
                if len(buf) != total:
                    return self._bad(f"snapshot ended at {len(buf)} of {total} bytes")
                if google_crc32c.value(bytes(buf)) != c.crc32c:
                    return self._bad("snapshot CRC-32C mismatch")
                head.snapshot.data = bytes(buf)
                self.node.log.info("received snapshot", peer=from_id, index=head.snapshot.metadata.index, bytes=total)
                t.deliver(from_id, [head])
                m.snapshots_received.labels("ok").inc()
                return tpb.SnapshotChunkResponse(applied=True)
        return self._bad("snapshot stream ended before its last chunk")

    def _bad(self, why: str) -> tpb.SnapshotChunkResponse:
        self.node.metrics.snapshots_received.labels("failed").inc()
        self.node.log.warning("snapshot from peer rejected", reason=why)
        return tpb.SnapshotChunkResponse(message=why)

    async def JoinCluster(self, request: tpb.JoinClusterRequest, context: Any) -> tpb.JoinClusterResponse:
        from zero.errors import ZeroError

        try:
            return await self.node.handle_join(request)
        except ZeroError as e:
            md = self.node.leader_hint()
            if md:
                context.set_trailing_metadata(md)
            await context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN), str(e))
            raise  # unreachable: abort raises


def add_raft_service(server: grpc.aio.Server, node: RaftHost) -> RaftService:
    """Register the `Raft` service of `node` on the app's gRPC server (before it starts)."""
    svc = RaftService(node)
    tgrpc.add_RaftServicer_to_server(svc, server)
    return svc
