"""ReadIndex bookkeeping (etcd read_only.go; Raft thesis §6.4).

A read request records the commit index at the time it arrived; it may be answered
once a quorum of voters acknowledged a heartbeat carrying the request's context,
proving the leader was still the leader when the read arrived.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .raftpb import Message

__all__ = ["ReadOnlyOption", "ReadOnly", "ReadIndexStatus"]


class ReadOnlyOption(enum.Enum):
    # Confirm leadership with a quorum heartbeat round per batch of reads.
    SAFE = 0
    # Trust the leader lease (CheckQuorum's election-timeout window): no round trip,
    # but correctness depends on bounded clock drift.
    LEASE_BASED = 1


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    __slots__ = ("option", "pending", "queue")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Dequeue every request up to and including the one with `ctx`: a quorum
        acknowledging a later heartbeat also confirms the earlier requests."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = self.queue[: i + 1]
        del self.queue[: i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
