"""Trace: the events of a simulated run, for failure reports and replay checks.

Every event is a tuple (tick, kind, details...): deliveries, losses, persists, hard
states, role changes, applies of conf changes, crashes, partitions, proposals. The last
`limit` are kept and printed on a failure; all of them go into a running SHA-256, so the
same seed and actions give the same digest.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from .. import raftpb
from ..raftpb import ConfChange, ConfChangeV2, ConfState
from .simnode import SimNode

__all__ = ["Trace", "describe_cc", "describe_cs", "format_event"]


class Trace:
    """A bounded list of events plus the digest of all of them."""

    __slots__ = ("events", "_digest")

    def __init__(self, limit: int) -> None:
        self.events: deque[tuple[Any, ...]] = deque(maxlen=limit)
        self._digest = hashlib.sha256()

    def record(self, tick: int, kind: str, *detail: Any) -> None:
        ev = (tick, kind) + detail
        self.events.append(ev)
        self._digest.update(repr(ev).encode())

    @property
    def digest(self) -> str:
        """A hash of every event so far: equal runs have equal digests."""
        return self._digest.hexdigest()

    def format(self, last: int | None = None) -> str:
        events = list(self.events)
        if last is not None:
            events = events[-last:]
        return "\n".join(format_event(ev) for ev in events)

    def report(self, headline: str, seed: int, tick: int, nodes: Iterable[SimNode]) -> str:
        """A failure report: the headline, the seed and tick that replay it, every
        node's state and the events kept."""
        states = ", ".join(
            f"{n.id}:{n.state}{'*' if n.is_leader else ''} term={n.term} commit={n.commit} "
            f"applied={n.applied}"
            for n in sorted(nodes, key=lambda n: n.id)
        )
        return (
            f"{headline}\n  seed={seed} tick={tick}\n  nodes: {states}\n"
            f"  last {len(self.events)} events:\n" + _indent(self.format())
        )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def describe_cc(cc: ConfChange | ConfChangeV2) -> str:
    if isinstance(cc, ConfChange):
        return f"{raftpb.ConfChangeType.Name(cc.type)}({cc.node_id})"
    if not cc.changes:
        return "LeaveJoint"
    inner = ",".join(f"{raftpb.ConfChangeType.Name(c.type)}({c.node_id})" for c in cc.changes)
    return f"V2[{raftpb.ConfChangeTransition.Name(cc.transition)}: {inner}]"


def describe_cs(cs: ConfState) -> str:
    s = f"voters={sorted(cs.voters)}"
    if cs.learners:
        s += f" learners={sorted(cs.learners)}"
    if cs.voters_outgoing:
        s += f" outgoing={sorted(cs.voters_outgoing)}"
    if cs.learners_next:
        s += f" learners_next={sorted(cs.learners_next)}"
    return s


def format_event(ev: tuple[Any, ...]) -> str:
    tick, kind, *rest = ev
    if kind in ("deliver", "lost") and len(rest) >= 3:
        rest = list(rest)
        rest[2] = raftpb.MessageType.Name(rest[2])
    return f"t={tick:<5} {kind:<16} " + " ".join(str(x) for x in rest)
