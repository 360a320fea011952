"""The inbound side of the peer transport: the `Raft` gRPC service of one zero.

`Stream` and `Send` carry RaftBatches (a `Stream` that ends admitted names the zero's wire
port in its trailing metadata: the handshake of a peer's link, zero/replica/peer.py), `SendSnapshot` a snapshot in chunks (checked for
order, size and CRC-32C before it is stepped), `JoinCluster` a new zero's request to
join. Every batch and snapshot is admitted by the transport's rules first
(Transport.admit); a refusal ends the call with its reason. Nothing is served before the
node's Raft has started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import google_crc32c
import grpc

from raftcore import raftpb

from zero.errors import ZeroError
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.replica.peer import WIRE_PORT_KEY, Refusal
from zero.replica.transport import Transport

__all__ = ["RaftService", "RaftHost", "add_raft_service", "MAX_SNAPSHOT"]

MAX_SNAPSHOT = 4 << 30

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class RaftHost(Protocol):
    """What the Raft service sees of its zero (ZeroNode implements it)."""

    @property
    def raft_id(self) -> int: ...
    @property
    def raft_started(self) -> bool: ...
    async def handle_join(self, req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse: ...
    def leader_hint(self) -> list[tuple[str, str]]: ...


class RaftService(tgrpc.RaftServicer):
    """The inbound side: peer batches, snapshot chunks, and JoinCluster."""

    def __init__(self, node: RaftHost, transport: Transport) -> None:
        self.node = node
        self.transport = transport

    async def _check_started(self, context: grpc.aio.ServicerContext[_Req, _Resp]) -> Transport:
        if not self.node.raft_started:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"zero {self.node.raft_id or '?'} has not started raft yet")
        return self.transport

    async def Stream(self, request_iterator: AsyncIterator[tpb.RaftBatch],
                     context: grpc.aio.ServicerContext[tpb.RaftBatch, tpb.RaftStreamResponse],
                     ) -> tpb.RaftStreamResponse:
        t = await self._check_started(context)
        n = 0
        async for batch in request_iterator:
            refusal, why = t.admit(batch.protocol, batch.cluster_id, batch.from_id, batch.to_id)
            if refusal != Refusal.ACCEPTED:
                t.log.debug("refused peer stream", peer=batch.from_id, reason=why)
                return tpb.RaftStreamResponse(refusal=refusal, message=why, batches=n)
            n += 1
            t.deliver(batch.from_id, batch.messages)
        if t.wire_port:  # the handshake of a peer's link (zero/replica/peer.py): where the wire listens
            context.set_trailing_metadata(((WIRE_PORT_KEY, str(t.wire_port)),))
        return tpb.RaftStreamResponse(batches=n)

    async def Send(self, request: tpb.RaftBatch,
                   context: grpc.aio.ServicerContext[tpb.RaftBatch, tpb.RaftStreamResponse],
                   ) -> tpb.RaftStreamResponse:
        t = await self._check_started(context)
        refusal, why = t.admit(request.protocol, request.cluster_id, request.from_id, request.to_id)
        if refusal != Refusal.ACCEPTED:
            return tpb.RaftStreamResponse(refusal=refusal, message=why)
        t.deliver(request.from_id, request.messages)
        return tpb.RaftStreamResponse(batches=1)

    async def SendSnapshot(self, request_iterator: AsyncIterator[tpb.SnapshotChunk],
                           context: grpc.aio.ServicerContext[tpb.SnapshotChunk, tpb.SnapshotChunkResponse],
                           ) -> tpb.SnapshotChunkResponse:
        t = await self._check_started(context)
        m = t.metrics
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
                t.log.info("received snapshot", peer=from_id, index=head.snapshot.metadata.index, bytes=total)
                t.deliver(from_id, [head])
                m.snapshots_received.labels("ok").inc()
                return tpb.SnapshotChunkResponse(applied=True)
        return self._bad("snapshot stream ended before its last chunk")

    def _bad(self, why: str) -> tpb.SnapshotChunkResponse:
        self.transport.metrics.snapshots_received.labels("failed").inc()
        self.transport.log.warning("snapshot from peer rejected", reason=why)
        return tpb.SnapshotChunkResponse(message=why)

    async def JoinCluster(self, request: tpb.JoinClusterRequest,
                          context: grpc.aio.ServicerContext[tpb.JoinClusterRequest, tpb.JoinClusterResponse],
                          ) -> tpb.JoinClusterResponse:
        try:
            return await self.node.handle_join(request)
        except ZeroError as e:
            md = self.node.leader_hint()
            if md:
                context.set_trailing_metadata(md)
            await context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN), str(e))
            raise  # unreachable: abort raises


def add_raft_service(server: grpc.aio.Server, node: RaftHost, transport: Transport) -> RaftService:
    """Register the `Raft` service of `node` and its transport on the app's gRPC server
    (before it starts)."""
    svc = RaftService(node, transport)
    tgrpc.add_RaftServicer_to_server(svc, server)
    return svc
