"""Per-tablet back-off after a failed move, so the rebalancer does not retry a tablet
whose move keeps failing: 1 h doubling to 24 h by default, as Dgraph. It lives in the
leader's memory only: a new leader starts with no tablet backed off."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Per-tablet back-off after a failed move: `base` doubling to `cap` (seconds)."""

    def __init__(self, base: float, cap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap, self._clock = base, cap, clock
        self._until: dict[str, tuple[float, float]] = {}  # name -> (until, last duration)

    def failed(self, name: str) -> float:
        last = self._until.get(name, (0.0, 0.0))[1]
        dur = min(self.cap, last * 2) if last else self.base
        self._until[name] = (self._clock() + dur, dur)
        return dur

    def succeeded(self, name: str) -> None:
        self._until.pop(name, None)

    def failed_ago(self, name: str) -> float | None:
        """Seconds since `name`'s last failed move while it still backs off; else None."""
        got = self._until.get(name)
        if got is None or self._clock() >= got[0]:
            return None
        return self._clock() - (got[0] - got[1])

    def blocked(self, name: str) -> bool:
        got = self._until.get(name)
        return got is not None and self._clock() < got[0]
