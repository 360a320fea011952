"""One conf change at a time, never silently lost.

Raft replaces a conf change proposed while another is unapplied by an empty entry (etcd
semantics), which is how Dgraph lost one of two concurrent joins. Here every conf change
goes through `ConfChanger`: a lock serializes them on the leader, each waits until the
previous one is applied before it is proposed, and one that is still replaced (a leader
change) is detected by its index (zero/replica/proposals.py) and proposed again with the
same dedup key.

Every conf change carries its ZeroState change (AddZero/RemoveZero) in its context, so
Raft's configuration and `state.zeros` change at the same index. Because Raft applies the
configuration part even when the state part is refused, each change is first dry-run
against a copy of the state; a refusal is reported before anything is proposed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from raftcore import ConfChangeError, Node, raftpb

from zero.errors import FailedPreconditionError, UnavailableError
from zero.log import Logger
from zero.pb import state_pb2
from zero.replica.options import NodeOptions
from zero.replica.ports import Clock
from zero.replica.proposals import ConfChangeDroppedError
from zero.state.machine import Applied, ZeroState

__all__ = ["ConfChanger", "ConfChangeHost", "check_conf_change", "CONF_CHANGE_TIMEOUT"]

CONF_CHANGE_TIMEOUT = 10.0  # seconds a membership change keeps retrying by default


def check_conf_change(raft: Node, cc: raftpb.ConfChange) -> None:
    """Refuse (FailedPreconditionError) a change that Raft would refuse to apply to the
    current configuration, or that would demote a voter (zero never does). With no conf
    change pending, the current configuration is the one the change will be applied to.
    A committed change that cannot be applied stops the Ready loop of every zero applying
    it, and again at every restart (it is replayed)."""
    st = raft.status()
    what = f"{raftpb.ConfChangeType.Name(cc.type)}({cc.node_id})"
    if cc.type == raftpb.ConfChangeAddLearnerNode and cc.node_id in st.voters:
        raise FailedPreconditionError(f"membership change {what} would demote voter {cc.node_id}")
    try:
        raft.check_conf_change(cc)
    except ConfChangeError as e:
        raise FailedPreconditionError(
            f"membership change {what} cannot apply to the configuration (voters {sorted(st.voters)}, "
            f"learners {sorted(st.learners)}): {e}") from None


class ConfChangeHost(Protocol):
    """What conf changes see of their zero (ZeroNode implements it): public methods only."""

    @property
    def raft_id(self) -> int: ...
    @property
    def log(self) -> Logger: ...
    @property
    def opts(self) -> NodeOptions: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> int: ...
    @property
    def applied(self) -> int: ...
    def new_key(self) -> str: ...
    async def propose_conf_change(self, cc: raftpb.ConfChange, proposal: state_pb2.Proposal, *,
                                  timeout: float | None = None) -> Applied: ...
    def conf_change_pending(self) -> bool: ...
    def check_conf_change(self, cc: raftpb.ConfChange) -> None: ...


class ConfChanger:
    """The conf changes of one zero, proposed one at a time on the leader."""

    def __init__(self, node: ConfChangeHost, clock: Clock) -> None:
        self.node = node
        self.clock = clock
        self.lock = asyncio.Lock()  # held by the caller of conf_change, across its checks

    def require_leader(self, what: str) -> None:
        node = self.node
        if not node.is_leader:
            lead = node.leader_id
            raise UnavailableError(f"{what} must run on the leader; this zero ({node.raft_id}) is not "
                                   f"the leader" + (f" (zero {lead} is)" if lead else " and knows none"))

    async def conf_change(self, cc: raftpb.ConfChange, proposal: state_pb2.Proposal, *,
                          timeout: float = CONF_CHANGE_TIMEOUT) -> Applied:
        """Propose `cc` (carrying `proposal`) on this leader and wait for its apply,
        retrying while it is dropped or replaced. The caller holds `self.lock`."""
        node = self.node
        clock = self.clock
        self.dry_run(proposal)
        if not proposal.key:
            proposal.key = node.new_key()
        deadline = clock.monotonic() + timeout
        while True:
            self.require_leader("a membership change")
            # Raft refuses a conf change while another is unapplied (pending_conf_index
            # > applied, also right after an election): wait for it here.
            while node.conf_change_pending():
                if clock.monotonic() > deadline:
                    raise UnavailableError("an earlier membership change is still being applied; retry")
                await clock.sleep(node.opts.tick_seconds / 2)
                self.require_leader("a membership change")
            node.check_conf_change(cc)
            c = raftpb.ConfChange()
            c.CopyFrom(cc)
            try:
                return await node.propose_conf_change(c, proposal, timeout=max(0.1, deadline - clock.monotonic()))
            except ConfChangeDroppedError as e:
                node.log.info("membership change was replaced in the log; proposing it again", error=str(e))
            except UnavailableError:
                if clock.monotonic() > deadline:
                    raise
            if clock.monotonic() > deadline:
                raise UnavailableError("membership change not applied in time; retry")
            await clock.sleep(node.opts.tick_seconds / 2)

    def dry_run(self, proposal: state_pb2.Proposal) -> None:
        """Raise what apply() would raise, without touching the real state."""
        node = self.node
        copy = ZeroState.restore(node.state.snapshot())
        p = state_pb2.Proposal()
        p.CopyFrom(proposal)
        p.key = ""
        copy.apply(max(node.applied, 0) + 1, p)
