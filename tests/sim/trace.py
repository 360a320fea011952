"""The event trace of one schedule: every event goes into a running SHA-256 (the digest
a replay must reproduce bit for bit) and the last ones are kept, printed when a
schedule fails.

An event is recorded as its time and its parts, as they are (a tuple appended, ~0.3 µs);
the digest hashes the repr of a batch of them at once, and lines are formatted only
when the tail is printed. The repr of what the harness records (strings, numbers,
bools, enums, tuples, lists and dicts of them, exceptions) is the same in every process,
so the digest is too. A part must not be mutated after it is recorded (the harness
records fresh values)."""

from __future__ import annotations

from collections.abc import Callable
import hashlib

__all__ = ["Trace"]

_BATCH = 4096

Event = tuple[float, tuple[object, ...]]


class Trace:
    def __init__(self, now: Callable[[], float], keep: int = 300) -> None:
        self._now = now
        self._hash = hashlib.sha256()
        self._keep = keep
        self._pending: list[Event] = []
        self._tail: list[Event] = []
        self._hashed = 0

    def add(self, *parts: object) -> None:
        pending = self._pending
        pending.append((self._now(), parts))
        if len(pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if pending:
            self._hash.update(repr(pending).encode())
            self._hashed += len(pending)
            self._tail = (self._tail + pending)[-self._keep:]
            self._pending = []

    @property
    def events(self) -> int:
        return self._hashed + len(self._pending)

    @property
    def digest(self) -> str:
        self._flush()
        return self._hash.hexdigest()

    def format_tail(self, n: int = 60) -> str:
        self._flush()
        return "\n".join(f"{t:.6f} {' '.join(map(str, parts))}" for t, parts in self._tail[-n:])
