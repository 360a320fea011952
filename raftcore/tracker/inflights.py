"""The inflight window of one follower: MsgApps sent but not yet acknowledged.

Bounded by count (max_inflight_msgs) and by payload bytes (max_inflight_bytes); when
full, the leader stops sending new entries to that follower until acks free slots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["Inflights"]


class Inflights:
    __slots__ = ("size", "max_bytes", "_q", "bytes")

    def __init__(self, size: int, max_bytes: int = 0, inflight: Iterable[tuple[int, int]] = ()) -> None:
        self.size = size
        self.max_bytes = max_bytes  # 0: unlimited
        # (last index of the message, payload bytes), in increasing index order.
        self._q: deque[tuple[int, int]] = deque(inflight)
        self.bytes = sum(n for _, n in self._q)

    def clone(self) -> "Inflights":
        return Inflights(self.size, self.max_bytes, self._q)

    def add(self, index: int, nbytes: int = 0) -> None:
        """Record a message whose last entry is `index`; indexes must increase."""
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free every inflight message with last index <= to."""
        q = self._q
        while q and q[0][0] <= to:
            self.bytes -= q.popleft()[1]

    def full(self) -> bool:
        return len(self._q) >= self.size or (self.max_bytes > 0 and self.bytes >= self.max_bytes)

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0
