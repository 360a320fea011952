"""Promoting learners: the leader duty that turns a caught-up joiner into a voter.

The leader promotes a learner (ConfChangeAddNode on an existing learner) only when it is
caught up (replicating, at most PROMOTE_LAG entries behind the commit index) and alive,
and has stayed so without a break for `promote_after` seconds (a joiner that comes up,
catches up and dies a moment later is never promoted), and only if the voters that are
alive after the promotion still form a quorum of the new, larger configuration. A
catching-up member therefore never holds up commits; the duty runs on whichever zero
leads, so a leader change in the middle of a join only delays it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from raftcore import ProgressStatus, StateType, Status, raftpb

from zero.log import Logger
from zero.pb import state_pb2
from zero.replica.confchange import ConfChanger
from zero.replica.options import NodeOptions
from zero.replica.ports import Clock
from zero.state.machine import ZeroState

__all__ = ["Promoter", "ready_learners", "PROMOTE_LAG", "PROMOTE_AFTER_MIN", "PROMOTE_AFTER_TIMEOUTS"]

PROMOTE_LAG = 64  # a learner at most this many entries behind the commit index is caught up
PROMOTE_AFTER_MIN = 1.0  # seconds a learner stays caught up and live before its promotion, at least
PROMOTE_AFTER_TIMEOUTS = 2  # ... and at least this many election timeouts


class PromotionHost(Protocol):
    """What promotion sees of its zero (ZeroNode implements it)."""

    @property
    def log(self) -> Logger: ...
    @property
    def opts(self) -> NodeOptions: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def is_leader(self) -> bool: ...
    def raft_status(self) -> Status: ...


def ready_learners(learners: Iterable[int], ready: Callable[[int], bool], since: dict[int, float],
                   now: float, promote_after: float) -> list[int]:
    """The learners that have been `ready` (caught up and live) without a break for
    `promote_after` seconds at `now`, in id order. `since` maps each ready learner to
    when its current ready stretch began; it is updated in place (a learner that is not
    ready, or no longer a learner, is dropped and starts over)."""
    current = set(learners)
    for rid in list(since):
        if rid not in current:
            del since[rid]
    out = []
    for rid in sorted(current):
        if not ready(rid):
            since.pop(rid, None)
            continue
        start = since.setdefault(rid, now)
        if now - start >= promote_after:
            out.append(rid)
    return out


class Promoter:
    """The promotion duty of one zero."""

    def __init__(self, node: PromotionHost, changes: ConfChanger, clock: Clock,
                 is_live: Callable[[int, Mapping[int, ProgressStatus]], bool]) -> None:
        self.node = node
        self.changes = changes
        self.clock = clock
        self.is_live = is_live
        self._ready_since: dict[int, float] = {}  # learner -> when it last became caught up and live

    @property
    def promote_after(self) -> float:
        """Seconds a learner must stay caught up and live before it is promoted."""
        return max(PROMOTE_AFTER_MIN, PROMOTE_AFTER_TIMEOUTS * self.node.opts.election_timeout)

    async def promote_learners(self) -> None:
        """Leader duty: promote each caught-up, live learner that is a zero member."""
        node = self.node
        clock = self.clock
        period = max(node.opts.tick_seconds, 0.02)
        self._ready_since.clear()  # a stretch observed under an earlier term does not count
        while True:
            await clock.sleep(period)
            if not node.is_leader or not node.raft_status().learners:
                self._ready_since.clear()
                continue
            async with self.changes.lock:
                st = node.raft_status()
                if st.raft_state != StateType.LEADER:
                    continue
                zeros = node.state.zeros

                def caught_up(rid: int) -> bool:
                    pr = st.progress.get(rid)
                    return (rid in zeros and pr is not None and pr.state == "REPLICATE"
                            and st.commit - pr.match <= PROMOTE_LAG and self.is_live(rid, st.progress))

                for rid in ready_learners(st.learners, caught_up, self._ready_since, clock.monotonic(),
                                          self.promote_after):
                    pr = st.progress[rid]
                    voters = set(st.voters) | {rid}
                    live = sum(1 for v in voters if self.is_live(v, st.progress))
                    if live < len(voters) // 2 + 1:
                        continue  # promoting now would leave the cluster without a live quorum
                    node.log.info("promoting a caught-up learner to voter", raft_id=rid, match=pr.match,
                                  commit=st.commit)
                    cc = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=rid)
                    p = state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=rid, addr=zeros[rid].addr))
                    await self.changes.conf_change(cc, p)
                    break  # re-read the status before the next one
