"""ReadIndex bookkeeping (etcd read_only.go; Raft thesis §6.4).

A read request records the commit index at the time it arrived; it may be answered
once a quorum of voters acknowledged a heartbeat sent after it arrived, proving the
leader was still the leader when the read arrived.

Each request gets a position: its rank among the reads this leader received in its
term. A heartbeat carries the position of the newest unconfirmed read (8 bytes,
little-endian) and a follower echoes it, so an acknowledgement of position p confirms
every read up to p. Positions are unique, unlike the requests' own contexts: a retried
or duplicated request with the context of an already confirmed read must not be
confirmed by late acknowledgements of the earlier heartbeat, or a stale leader could
answer it with an old commit index (etcd's TestReadOnlyDuplicateRequest).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .quorum import JointConfig
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


class ReadOnly:
    __slots__ = ("option", "acks", "unconfirmed", "confirmed")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        # Per peer, the highest read position it acknowledged.
        self.acks: dict[int, int] = {}
        # Reads not yet confirmed, oldest first; unconfirmed[i] has position
        # confirmed + i + 1.
        self.unconfirmed: list[ReadIndexStatus] = []
        # How many reads were confirmed (and dropped from the front of unconfirmed).
        self.confirmed = 0

    def add_request(self, index: int, m: Message) -> None:
        """Queue a read that arrived when the commit index was `index`."""
        self.unconfirmed.append(ReadIndexStatus(req=m, index=index))

    def recv_ack(self, node_id: int, ctx: bytes) -> None:
        """`node_id` acknowledged a heartbeat carrying `ctx` (a read position)."""
        if ctx:
            pos = int.from_bytes(ctx, "little")
            if pos > self.acks.get(node_id, 0):
                self.acks[node_id] = pos

    def maybe_advance(self, voters: JointConfig) -> list[ReadIndexStatus]:
        """Dequeue every read confirmed by a quorum of `voters`."""
        acks = self.acks
        n = voters.committed_index(lambda vid: acks.get(vid, 0))
        k = min(n - self.confirmed, len(self.unconfirmed))
        if k <= 0:
            return []
        done = self.unconfirmed[:k]
        del self.unconfirmed[:k]
        self.confirmed += k
        return done

    def heartbeat_ctx(self) -> bytes:
        """The context a heartbeat must carry to confirm every unconfirmed read."""
        if not self.unconfirmed:
            return b""
        return (self.confirmed + len(self.unconfirmed)).to_bytes(8, "little")
