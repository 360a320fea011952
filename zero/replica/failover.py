"""Failover when the operating system says the leader is gone (issue "Fast paths").

Raft's followers notice a dead leader only when an election timeout passes without
hearing from it. But when the leader's *process* dies (kill -9, a crash, an OOM kill),
its kernel closes its sockets: the follower's stream to it is reset and reconnecting is
refused, long before any timeout. A follower that sees that forgets the leader (as
etcd/raft's ForgetLeader: it then grants pre-votes, which a follower still in the
leader's lease refuses) and campaigns after a short random delay (so that two followers
that saw the same crash seldom split the vote). PreVote keeps this safe: a follower
whose link to a healthy leader flapped asks for pre-votes that the others, who still
hear the leader, refuse — no term is bumped, the leader stays. A paused or partitioned
leader resets nothing; that still takes the election timeout.
"""

from __future__ import annotations

import asyncio
import random
from typing import Protocol

from raftcore import StateType

from zero.log import Logger
from zero.replica.ports import Clock

__all__ = ["CrashFailover", "FailoverRaft", "Known"]


class FailoverRaft(Protocol):
    """The part of raftcore.Node this needs."""

    def forget_leader(self) -> None: ...
    async def campaign(self) -> None: ...


class Known(Protocol):
    """What this zero knows of the leadership (zero/replica/leadership.py's Leadership)."""

    lead: int  # 0: none
    term: int
    role: StateType


class CrashFailover:
    """Forget a leader whose connection was reset or refused, then campaign soon."""

    def __init__(self, *, clock: Clock, rng: random.Random, max_delay: float, log: Logger,
                 leadership: Known) -> None:
        self.clock = clock
        self.rng = rng
        self.max_delay = max_delay
        self.log = log
        self.known = leadership
        self._task: asyncio.Task[None] | None = None
        self.campaigns = 0  # started because of a crash (tests and metrics read it)

    def peer_lost(self, peer: int, raft: FailoverRaft) -> None:
        """The connection to zero `peer` was reset or refused."""
        known = self.known
        if known.role == StateType.LEADER or peer != known.lead:
            return
        raft.forget_leader()
        self.log.info("the leader's connection was reset or refused; forgetting it and campaigning soon",
                      leader=peer)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._campaign(raft, known.term),
                                                                name="zero-crash-failover")

    async def _campaign(self, raft: FailoverRaft, term: int) -> None:
        await self.clock.sleep(self.rng.uniform(0, self.max_delay))
        # Nobody took over meanwhile, and nobody is campaigning: a vote we granted moved
        # our term (campaigning too would split the vote and cost an election timeout).
        known = self.known
        if known.lead == 0 and known.role != StateType.LEADER and known.term == term:
            self.campaigns += 1
            await raft.campaign()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
