"""SimNetwork: a seeded, tick-driven message network between Raft node ids.

Rules (all decided by one injected `random.Random`, so the same seed gives the same run):
- `send(msg, now)` serializes the message (what crosses the wire is bytes, so no sender
  state can alias a receiver's) and, unless the link is cut or the message is dropped
  (probability `drop`), queues it for delivery at `now + delay`, `delay` drawn uniformly
  from `delay=(lo, hi)` ticks. With probability `duplicate` a second copy is queued with
  its own delay.
- `deliver(now)` returns the messages due at or before `now`, in send order unless
  `reorder` (the probability that a batch is shuffled) says otherwise; random delays
  reorder messages as well.
- A link is usable when neither end is down, no partition separates the ends and no
  one-way cut blocks that direction. It is checked both at send and at delivery: a
  message in flight when its link breaks is lost, as with a dropped connection.
- Messages to a node that is down (crashed) are lost, including those already in flight;
  those a node sent before it went down still travel.

Every message the network loses is passed to `on_drop` (if set), so a cluster can report
snapshot failures and unreachable peers as a real transport would.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..raftpb import Message

__all__ = ["SimNetwork", "NetworkStats"]


@dataclass(slots=True)
class NetworkStats:
    """Counters over the network's whole life (copies: a duplicate counts as sent)."""

    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


class SimNetwork:
    """A deterministic simulated network. See the module docstring for its rules."""

    def __init__(
        self,
        seed: int | str = 0,
        *,
        rng: random.Random | None = None,
        drop: float = 0.0,
        duplicate: float = 0.0,
        delay: tuple[int, int] = (0, 0),
        reorder: float = 0.0,
        on_drop: Callable[[Message, str], None] | None = None,
    ) -> None:
        self.rng = rng if rng is not None else random.Random(seed)
        self.drop = 0.0
        self.duplicate = 0.0
        self.delay = (0, 0)
        self.reorder = 0.0
        self.set_faults(drop=drop, duplicate=duplicate, delay=delay, reorder=reorder)
        self.on_drop = on_drop
        self.stats = NetworkStats()
        # Heap of (deliver_at, seq, wire bytes). seq keeps equal-time order stable.
        self._queue: list[tuple[int, int, bytes]] = []
        self._seq = 0
        # node id -> partition group number; ids absent from the map share group -1.
        self._group: dict[int, int] = {}
        self._next_group = 0
        self._cuts: set[tuple[int, int]] = set()
        self._down: set[int] = set()

    # -- configuration -------------------------------------------------------------
    def set_faults(
        self,
        *,
        drop: float | None = None,
        duplicate: float | None = None,
        delay: tuple[int, int] | None = None,
        reorder: float | None = None,
    ) -> None:
        """Change the fault rates; arguments left as None keep their value."""
        if drop is not None:
            _check_probability("drop", drop)
            self.drop = drop
        if duplicate is not None:
            _check_probability("duplicate", duplicate)
            self.duplicate = duplicate
        if delay is not None:
            lo, hi = delay
            if not 0 <= lo <= hi:
                raise ValueError(f"delay must be (lo, hi) with 0 <= lo <= hi, got {delay!r}")
            self.delay = (lo, hi)
        if reorder is not None:
            _check_probability("reorder", reorder)
            self.reorder = reorder

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the network: nodes in different groups cannot talk. Nodes named in no
        group form one more group together. Replaces any previous partition."""
        self._group = {}
        for group in groups:
            self._next_group += 1
            for nid in group:
                if nid in self._group:
                    raise ValueError(f"node {nid} is in more than one partition group")
                self._group[nid] = self._next_group

    def isolate(self, nid: int) -> None:
        """Cut `nid` off from every other node, both directions (keeps other cuts)."""
        self._next_group += 1
        self._group[nid] = self._next_group

    def cut(self, from_: int, to: int) -> None:
        """Block messages from `from_` to `to` only (a one-way link failure)."""
        self._cuts.add((from_, to))

    def heal(self) -> None:
        """Remove every partition and cut. Down nodes stay down; fault rates stay."""
        self._group = {}
        self._cuts = set()

    def set_down(self, nid: int, down: bool = True) -> None:
        """Mark a node crashed (down) or back up. Going down loses every message in
        flight to it."""
        if down:
            self._down.add(nid)
            kept = []
            for item in self._queue:
                msg = Message.FromString(item[2])
                if msg.to == nid:
                    self._lose(msg, "down")
                else:
                    kept.append(item)
            heapq.heapify(kept)
            self._queue = kept
        else:
            self._down.discard(nid)

    def is_down(self, nid: int) -> bool:
        return nid in self._down

    def can_reach(self, from_: int, to: int) -> bool:
        """Whether a message from `from_` to `to` would currently get through (ignoring
        random drops)."""
        if from_ in self._down or to in self._down:
            return False
        if self._group.get(from_, -1) != self._group.get(to, -1):
            return False
        return (from_, to) not in self._cuts

    # -- traffic -------------------------------------------------------------------
    def send(self, msg: Message, now: int) -> None:
        """Put `msg` on the wire at tick `now` (subject to the fault model)."""
        wire = msg.SerializeToString()
        if not self._link_ok(msg.from_, msg.to):
            self._lose(msg, "cut")
            return
        if self.drop and self.rng.random() < self.drop:
            self._lose(msg, "drop")
            return
        self._enqueue(wire, now)
        if self.duplicate and self.rng.random() < self.duplicate:
            self.stats.duplicated += 1
            self._enqueue(wire, now)

    def deliver(self, now: int) -> list[Message]:
        """Remove and return the messages due at or before tick `now` whose link still
        works (the others are lost)."""
        due: list[bytes] = []
        q = self._queue
        while q and q[0][0] <= now:
            due.append(heapq.heappop(q)[2])
        if len(due) > 1 and self.reorder and self.rng.random() < self.reorder:
            self.rng.shuffle(due)
        out = []
        for wire in due:
            msg = Message.FromString(wire)
            if self._link_ok(msg.from_, msg.to):
                self.stats.delivered += 1
                out.append(msg)
            else:
                self._lose(msg, "cut")
        return out

    def pending(self) -> int:
        """How many messages are in flight."""
        return len(self._queue)

    def next_due(self) -> int | None:
        """The tick at which the earliest in-flight message is due, or None."""
        return self._queue[0][0] if self._queue else None

    # -- internals -----------------------------------------------------------------
    def _link_ok(self, from_: int, to: int) -> bool:
        # The sender being down does not matter: what it sent before crashing may still
        # arrive (and reach a later incarnation of the receiver's peer).
        if to in self._down:
            return False
        if self._group.get(from_, -1) != self._group.get(to, -1):
            return False
        return (from_, to) not in self._cuts

    def _enqueue(self, wire: bytes, now: int) -> None:
        lo, hi = self.delay
        at = now + (lo if lo == hi else self.rng.randint(lo, hi))
        self.stats.sent += 1
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, wire))

    def _lose(self, msg: Message, why: str) -> None:
        self.stats.dropped += 1
        if self.on_drop is not None:
            self.on_drop(msg, why)


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
