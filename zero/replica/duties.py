"""The replica's own duties, and how any leader duty runs.

`run_leader_task` turns a coroutine factory into a leadership callback: the duty runs
while this zero leads and is cancelled when leadership is lost. The app registers every
leader duty in one place (zero/app.py): the replica's own — cluster identity, promoting
caught-up learners (zero/replica/promotion.py), raising the leases after a WAL repair —
and those of the layers above (tablet moves).

- ensure_cluster_identity: a leader mints the cluster id (randomness enters the state
  only inside the proposal) and registers itself in the membership, or publishes its
  new address or version.
- keep_my_addr: a follower restarted with another --my (or a newer version) publishes
  it; the leader does it in ensure_cluster_identity.
- LeaseRepair: after a WAL whose damaged tail was cut off, the lease ceilings are raised
  by a margin before any id is handed out (the cut-off records may have been synced
  lease blocks whose ids were handed out).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from raftcore.wal.files import fsync_dir

from zero.errors import ZeroError
from zero.log import Logger
from zero.pb import state_pb2, zero_pb2
from zero.replica.identity import LEASE_BUMP_FILE, write_marker
from zero.replica.options import NodeOptions
from zero.replica.ports import Clock, WalStorage
from zero.state.machine import Applied, ZeroState
from zero.state.versions import ZERO_VERSION

__all__ = ["run_leader_task", "ensure_cluster_identity", "keep_my_addr", "LeaseRepair", "DutyHost"]


class _Logged(Protocol):
    @property
    def log(self) -> Logger: ...


class DutyHost(Protocol):
    """What the duties see of their zero (ZeroNode implements it): public methods only."""

    @property
    def log(self) -> Logger: ...
    @property
    def raft_id(self) -> int: ...
    @property
    def opts(self) -> NodeOptions: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def state(self) -> ZeroState: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> int: ...
    @property
    def raft_started(self) -> bool: ...
    @property
    def removed(self) -> asyncio.Event: ...
    @property
    def rng(self) -> random.Random | None: ...
    def new_key(self) -> str: ...
    async def read_barrier(self, *, timeout: float | None = None) -> None: ...
    async def propose(self, proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied: ...


def run_leader_task(node: _Logged, factory: Callable[[], Awaitable[None]], name: str) -> Callable[[bool, int], None]:
    """A leadership callback that runs `factory()` while this zero leads and cancels it
    when leadership is lost."""
    holder: dict[str, asyncio.Task[None] | None] = {"task": None}

    def on_change(leader: bool, term: int) -> None:
        t = holder["task"]
        if t is not None and not t.done():
            t.cancel()
        holder["task"] = None
        if leader:
            holder["task"] = asyncio.get_running_loop().create_task(_guard(node, factory, name), name=name)

    return on_change


async def _guard(node: _Logged, factory: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        await factory()
    except asyncio.CancelledError:
        raise
    except ZeroError as e:
        node.log.warning("leader duty failed; it runs again at the next leadership", duty=name, error=str(e))
    except Exception as e:  # a bug: log it loudly, keep the node running
        node.log.error("leader duty crashed", duty=name, error=repr(e))


def _announce_needed(node: DutyHost, z: zero_pb2.Member) -> bool:
    """Whether the state's record of this zero (address, announced version) is stale."""
    return z.addr != node.opts.my_addr or node.state.zero_version(node.raft_id) != ZERO_VERSION


def _add_me(node: DutyHost) -> state_pb2.Proposal:
    return state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=node.raft_id, addr=node.opts.my_addr,
                                                         version=ZERO_VERSION))


async def ensure_cluster_identity(node: DutyHost) -> None:
    """Run once by a leader: mint the cluster id (randomness enters the state only
    inside the proposal) and register this zero in the membership (or publish its new
    address)."""
    if not node.state.cluster_id:
        rng = node.rng  # seeded in a simulation; None: uuid4 from OS entropy
        minted = uuid.UUID(int=rng.getrandbits(128), version=4) if rng is not None else uuid.uuid4()
        await node.propose(state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id=str(minted))))
    z = node.state.zeros.get(node.raft_id)
    if z is None or _announce_needed(node, z):  # new, restarted with another --my, or upgraded
        await node.propose(_add_me(node))


async def keep_my_addr(node: DutyHost) -> None:
    """A zero restarted with a different --my publishes it: an AddZero with its raft id
    and the new address (a normal proposal; the raft config does not change)."""
    period = max(node.opts.election_timeout, 0.05)
    while node.raft_started and not node.removed.is_set():
        await node.clock.sleep(period)
        z = node.state.zeros.get(node.raft_id)
        if z is None or not _announce_needed(node, z) or not node.leader_id or node.is_leader:
            continue  # the leader does it in ensure_cluster_identity
        try:
            await node.read_barrier()
            z = node.state.zeros.get(node.raft_id)
            if z is not None and _announce_needed(node, z):
                node.log.info("publishing this zero's address and version", old=z.addr, new=node.opts.my_addr,
                              version=ZERO_VERSION)
                await node.propose(_add_me(node))
        except ZeroError as e:
            node.log.info("could not publish this zero's address yet", error=str(e))


class LeaseRepair:
    """From a WAL repair until the lease ceilings were raised by the margin: `pending`,
    and no ids or timestamps may be handed out meanwhile (zero/leader/leases.py). The
    marker file LEASE_BUMP_FILE keeps it pending across restarts until that is done."""

    def __init__(self, data_dir: str, margin: int, log: Logger) -> None:
        self._data_dir = data_dir
        self._margin = margin
        self._log = log
        self.pending = False

    def opened(self, storage: WalStorage) -> None:
        """The WAL was opened: note a repair, durably."""
        if storage.repaired is not None:
            # The cut-off records may have been synced lease blocks whose ids were handed
            # out: until the ceilings are raised by the margin (a leader duty), this zero
            # hands out no ids. The marker survives restarts until that is done.
            write_marker(self._data_dir, LEASE_BUMP_FILE, storage.repaired)
            self._log.warning("the WAL's damaged tail was cut off; leases will continue above a margin",
                              repaired=storage.repaired, margin=self._margin)
        self.pending = os.path.exists(os.path.join(self._data_dir, LEASE_BUMP_FILE))

    async def raise_leases(self, node: DutyHost) -> None:
        """Leader duty after a WAL repair: lease (and drop) `margin` ids of each kind, so
        nothing handed out from a cut-off lease record is handed out again, then forget
        the marker. Plain LeaseIds proposals: no new entry kind on the wire."""
        if not self.pending:
            return
        margin = self._margin
        key = node.new_key()
        for kind in (zero_pb2.UID, zero_pb2.TIMESTAMP):
            await node.propose(state_pb2.Proposal(key=f"{key}-{kind}", lease_ids=state_pb2.LeaseIds(
                kind=kind, count=margin)))
        os.unlink(os.path.join(self._data_dir, LEASE_BUMP_FILE))
        fsync_dir(self._data_dir)
        self.pending = False
        self._log.info("lease ceilings raised after the WAL repair", margin=margin,
                       max_uid=node.state.max_uid, max_txn_ts=node.state.max_txn_ts)
