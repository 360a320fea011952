"""Issue 22 item 4i: a joiner listed "zero 1 in term 0" on the status page. Root cause: the
Ready loop handed a Ready's soft state (the new leader) to Leadership before its hard
state (the term), so the change was recorded with the term the joiner knew before: 0.

A real raftcore Node that has never heard of a term meets a leader of term 7 in one
message; the Ready it hands out carries both the leader and the term. The Ready loop must
record, log and announce that change with term 7.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from raftcore import Config, MemoryStorage, Node, Ready, raftpb

from support import aio
from zero.metrics import Metrics
from zero.replica.leadership import Leadership
from zero.replica.ready_loop import ReadyLoop


class _Clock:
    def monotonic(self) -> float:
        return 1000.0

    def wall(self) -> float:
        return 1_765_000_000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(3600)  # the tick timer never fires: only the message moves Raft


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, *args: object, **kw: object) -> None:
        self.lines.append((event, kw))

    debug = warning = error = info

    def bind(self, **kw: object) -> "_Log":
        return self


class _Wal:
    async def save(self, rd: Ready) -> None:
        pass


class _Applier:
    applied = 0

    def apply(self, entries: list[raftpb.Entry], raft: Node) -> list[Any]:
        return []

    def install(self, snap: raftpb.Snapshot) -> None:
        pass


def _reads() -> Any:
    return SimpleNamespace(expire=lambda **kw: None, release=lambda applied: None,
                           on_read_state=lambda ctx, index: None)


async def _joiner_meets_leader(term: int) -> tuple[Leadership, _Log, list[tuple[bool, int]]]:
    log = _Log()
    clock = _Clock()
    raft = Node.start(Config(id=2, storage=MemoryStorage()), peers=None)  # a joiner: no term, no peers
    leadership = Leadership(clock=clock, metrics=Metrics(), log=log, on_lost=lambda: None)
    announced: list[tuple[bool, int]] = []
    leadership.callbacks.append(lambda leading, t: announced.append((leading, t)))
    loop = ReadyLoop(raft, wal=_Wal(), applier=_Applier(), snapshots=SimpleNamespace(due=lambda: False),
                     reads=_reads(), clock=clock, metrics=Metrics(), log=log, tick_seconds=0.1,
                     leadership=leadership, send=lambda msgs: None, on_applied=lambda b: None,
                     on_snapshot_installed=lambda: None, on_failure=lambda e: None)
    loop.start()
    try:
        raft.step_nowait(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=term))
        await aio.until(lambda: leadership.changes, 5, message="the leader change recorded")
    finally:
        await raft.stop()
        await loop.stop()
    return leadership, log, announced


def test_a_joiners_first_leader_is_recorded_with_its_term() -> None:
    leadership, log, _ = asyncio.run(_joiner_meets_leader(7))
    assert [(term, lead) for _, term, lead in leadership.changes] == [(7, 1)]
    assert leadership.term == 7 and leadership.lead == 1
    assert ("leader changed", {"leader": 1, "term": 7}) in log.lines


def test_the_term_is_set_before_the_soft_state_is_handled() -> None:
    """Whatever the leader change triggers (the record, the log line, the callbacks) reads
    the term of the same Ready; a zero that only follows announces nothing."""
    leadership, _, announced = asyncio.run(_joiner_meets_leader(3))
    assert leadership.changes[-1][1:] == (3, 1)
    assert announced == []
