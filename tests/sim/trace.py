"""The event trace of one schedule: every event goes into a running SHA-256 (the digest
a replay must reproduce bit for bit) and the last ones into a bounded deque, printed
when a schedule fails."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable

__all__ = ["Trace"]


class Trace:
    def __init__(self, now: Callable[[], float], keep: int = 300) -> None:
        self._now = now
        self._hash = hashlib.sha256()
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self.events = 0

    def add(self, *parts: object) -> None:
        line = f"{self._now():.6f} {' '.join(map(str, parts))}"
        self._hash.update(f"{line}\n".encode())
        self.tail.append(line)
        self.events += 1

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def format_tail(self, n: int = 60) -> str:
        return "\n".join(list(self.tail)[-n:])
