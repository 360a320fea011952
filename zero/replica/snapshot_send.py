"""A Raft snapshot to one peer over `Raft.SendSnapshot` (gRPC, in chunks with a CRC-32C of
the whole): what a Peer (zero/replica/peer.py) runs as its snapshot task. The outcome is
reported to Raft with report_snapshot(FINISH|FAILURE); a refusal is handled as on the
peer's link (PeerOwner.refused_by_peer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import google_crc32c
import grpc

from raftcore import SnapshotStatus, raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.replica.ports import PeerHost

__all__ = ["SnapshotOwner", "send_snapshot", "SNAPSHOT_CHUNK", "SNAPSHOT_TIMEOUT"]

SNAPSHOT_CHUNK = 1 << 20
SNAPSHOT_TIMEOUT = 120.0


class SnapshotOwner(Protocol):
    @property
    def host(self) -> PeerHost: ...
    @property
    def log(self) -> Logger: ...
    @property
    def metrics(self) -> Metrics: ...
    def refused_by_peer(self, peer: int, refusal: int, message: str) -> None: ...


async def send_snapshot(t: SnapshotOwner, rid: int, channel: grpc.aio.Channel, msg: raftpb.Message,
                        protocol: int) -> None:
    """Send the MsgSnap `msg` to zero `rid` over `channel` and report how it went."""
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
            c = tpb.SnapshotChunk(protocol=protocol, cluster_id=node.cluster_id, from_id=node.raft_id,  # type: ignore[arg-type]
                                  to_id=rid, offset=off, data=piece, total_size=total, last=last)
            if first:
                c.message.CopyFrom(head)
            if last:
                c.crc32c = crc
            yield c
            off += len(piece)
            first = False

    ok = False
    try:
        stub = tgrpc.RaftStub(channel)
        t.log.info("sending snapshot", peer=rid, index=msg.snapshot.metadata.index, bytes=total)
        resp = await stub.SendSnapshot(chunks(), timeout=SNAPSHOT_TIMEOUT)
        if resp.refusal != tpb.RaftStreamResponse.ACCEPTED:
            t.refused_by_peer(rid, resp.refusal, resp.message)
            t.log.warning("peer refused snapshot", peer=rid, reason=resp.message)
        ok = resp.applied
    except asyncio.CancelledError:
        node.report_snapshot(rid, SnapshotStatus.FAILURE)
        raise
    except Exception as e:
        t.log.warning("snapshot transfer failed", peer=rid, error=repr(e))
    t.metrics.snapshots_sent.labels("ok" if ok else "failed").inc()
    node.report_snapshot(rid, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE)
