"""Proposals that wait for their own apply.

Every proposal carries a dedup key (`<raft id>.<incarnation>.<seq>` unless the caller
set one); the proposer waits on a future under that key, which the apply of the entry
resolves with its result (or with the ZeroError apply raised). The wait is bounded: on
timeout the outcome is unknown, and retrying with the same key is safe because apply
deduplicates by key.

A conf change can lose its log slot without ever being applied: Raft replaces a conf
change proposed while another is unapplied by an empty entry, and a new leader may
overwrite the slot. On the leader its slot (the log index it was appended at) is
remembered; when that index applies without resolving the waiter, the waiter fails with
ConfChangeDroppedError and membership proposes it again.
"""

from __future__ import annotations

import asyncio

from raftcore import Node, ProposalDroppedError, StateType, raftpb

from zero import buggify
from zero.errors import UnavailableError, ZeroError
from zero.metrics import Metrics
from zero.pb import state_pb2
from zero.replica.ports import Clock
from zero.replica.reads import fail
from zero.state.machine import Applied

__all__ = ["Proposals", "Waiter", "ConfChangeDroppedError"]


class ConfChangeDroppedError(UnavailableError):
    """The conf change's log slot was taken by another entry (replaced by Raft, or
    overwritten after a leader change): it did not happen, and may be proposed again."""


class Waiter:
    """One proposer waiting for the apply of its entry."""

    __slots__ = ("future", "since")

    def __init__(self, future: asyncio.Future[Applied], since: float) -> None:
        self.future = future
        self.since = since  # Clock.monotonic when proposed, for the latency metric


class Proposals:
    """The waiters of one zero, by dedup key, and the log slots of its conf changes."""

    def __init__(self, *, incarnation: str, clock: Clock, metrics: Metrics, timeout: float) -> None:
        self.incarnation = incarnation  # makes keys unique across restarts of this zero
        self._clock = clock
        self._metrics = metrics
        self._timeout = timeout
        if buggify.ON and buggify.fire("proposals.short-timeout"):
            self._timeout = 0.5  # outcomes unknown more often, under any fault
        self._seq = 0
        self._waiters: dict[str, Waiter] = {}
        self._cc_index: dict[int, str] = {}  # our conf change's log index -> its proposal key

    def new_key(self, raft_id: int) -> str:
        self._seq += 1
        return f"{raft_id}.{self.incarnation}.{self._seq}"

    async def propose(self, raft: Node, proposal: state_pb2.Proposal, timeout: float | None) -> Applied:
        """Hand `proposal` (its key set) to Raft and wait for its apply."""
        fut: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._waiters[proposal.key] = Waiter(fut, self._clock.monotonic())
        try:
            try:
                await raft.propose(proposal.SerializeToString())
            except ProposalDroppedError as e:
                self._metrics.proposals.labels("dropped").inc()
                raise UnavailableError(f"no leader can accept the change right now ({e}); retry") from None
            try:
                # asyncio.timeout, not wait_for(shield(fut)): the apply's set_result wakes
                # this task directly instead of through two more callback hops (every
                # replicated write's latency). The future is ours alone: a cancel is safe.
                async with asyncio.timeout(timeout or self._timeout):
                    return await fut
            except TimeoutError:
                self._metrics.proposals.labels("timeout").inc()
                raise UnavailableError(
                    f"the change was not applied within {timeout or self._timeout:.1f}s "
                    "(no quorum?); its outcome is unknown, retry") from None
        finally:
            self._waiters.pop(proposal.key, None)

    async def propose_conf_change(self, raft: Node, cc: raftpb.ConfChange | raftpb.ConfChangeV2,
                                  proposal: state_pb2.Proposal, timeout: float | None) -> Applied:
        """Hand `cc` (its context already holding `proposal`, its key set) to Raft and
        wait for its apply; ConfChangeDroppedError when its slot went to another entry."""
        fut: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._waiters[proposal.key] = Waiter(fut, self._clock.monotonic())
        try:
            try:
                await raft.propose_conf_change(cc)
            except ProposalDroppedError as e:
                raise UnavailableError(f"membership change dropped ({e}); retry") from None
            if raft.status().raft_state == StateType.LEADER:
                # Appended to our log synchronously: remember the slot to notice a replacement.
                self._cc_index[raft.last_index()] = proposal.key
            try:
                async with asyncio.timeout(timeout or self._timeout):
                    return await fut
            except TimeoutError:
                raise UnavailableError("membership change not applied in time; its outcome is unknown") from None
        finally:
            self._waiters.pop(proposal.key, None)
            for i in [i for i, k in self._cc_index.items() if k == proposal.key]:
                del self._cc_index[i]

    # -- the apply side (the Ready loop) ----------------------------------------------------
    def take(self, key: str) -> Waiter | None:
        """The waiter of the entry with dedup key `key` being applied, if it waits here."""
        return self._waiters.pop(key, None) if key else None

    def applied(self, w: Waiter, a: Applied) -> None:
        if not w.future.done():
            w.future.set_result(a)
            self._metrics.proposals.labels("ok").inc()
            self._metrics.proposal_seconds.observe(self._clock.monotonic() - w.since)

    def refused(self, w: Waiter, err: ZeroError) -> None:
        if not w.future.done():
            w.future.set_exception(err)
            self._metrics.proposals.labels("failed").inc()

    def slot_applied(self, index: int) -> None:
        """Entry `index` was applied. If our conf change was appended there and its
        waiter is still waiting, another entry took the slot (Raft replaced it, or a new
        leader overwrote it): fail the waiter so the change is proposed again."""
        if not self._cc_index:
            return
        key = self._cc_index.pop(index, None)
        if key is None:
            return
        w = self._waiters.pop(key, None)
        if w is not None and not w.future.done():
            w.future.set_exception(ConfChangeDroppedError(f"conf change at index {index} was replaced"))

    def fail_all(self, err: ZeroError) -> None:
        fail([w.future for w in self._waiters.values()], err)
        self._waiters.clear()
