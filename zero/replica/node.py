"""ZeroNode: one zero's Raft replica around the pure state machine.

Built against three seams (zero/replica/ports.py): a PeerTransport to the other zeros
(zero/replica/transport.py over gRPC), the WalStorage it persists to (written by the
Ready loop in one worker thread: wal.py), and a Clock for the tick timer, deadlines,
liveness and backoffs. It owns what runs on them: the Ready loop (ready_loop.py), the
applied state (apply.py), proposals and their waiters (proposals.py), ReadIndex rounds
(reads.py), snapshots (snapshots.py), who leads (leadership.py), membership
(membership.py) and the start on a data dir (boot.py, identity.py). Its peer list
follows `state.zeros` (and, while a joiner catches up, its join answer).

The node registers nothing into its own callbacks: the app wires every leader duty in
one place (zero/app.py; zero/replica/duties.py run_leader_task). Lifecycle:

    node = ZeroNode(NodeOptions(data_dir=..., my_addr=..., peer=...), transport=transport,
                    storage=open_wal(data_dir, log), clock=SystemClock(), logger=log, metrics=metrics)
    add_raft_service(server, node, transport)      # before server.start()
    await node.start()                             # bootstrap, restart or join
    await node.removed.wait() / signal             # a removed zero exits
    await node.stop()                              # hands leadership over first; closes the WAL
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Mapping
from types import MappingProxyType

from raftcore import Node, NodeStoppedError, SnapshotStatus, Status, raftpb

from zero.errors import UnavailableError, ZeroError
from zero.log import Logger
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import state_pb2, zero_pb2
from zero.replica.apply import Applier
from zero.replica.boot import check_restorable, find_origin, raft_config, start_raft
from zero.replica.confchange import CONF_CHANGE_TIMEOUT, check_conf_change
from zero.replica.duties import LeaseRepair, keep_my_addr
from zero.replica.failover import CrashFailover
from zero.replica.leadership import Leadership, leader_hint
from zero.replica.membership import Membership
from zero.replica.options import NodeOptions
from zero.replica.ports import Clock, PeerTransport, WalStorage
from zero.replica.proposals import Proposals
from zero.replica.reads import ReadRounds
from zero.replica.ready_loop import ReadyLoop
from zero.replica.snapshots import Snapshots
from zero.replica.wal import WalWriter
from zero.state.machine import Applied, ZeroState
from zero.state.versions import check_proposal

__all__ = ["ZeroNode", "NodeOptions", "READ_ROUND_TIMEOUTS"]

READ_ROUND_TIMEOUTS = 2  # an unanswered ReadIndex round fails after this many election timeouts


class ZeroNode:
    """One zero's replica of the Raft group and of ZeroState."""

    def __init__(self, opts: NodeOptions, *, transport: PeerTransport, storage: WalStorage, clock: Clock,
                 logger: Logger, metrics: Metrics | None = None, rng: random.Random | None = None) -> None:
        self.opts = opts
        self.log = logger
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.transport = transport
        self.raft_id = 0
        self._node: Node | None = None
        self._wal = WalWriter(storage)
        self._stopping = False
        self._fatal: BaseException | None = None
        self.rng = rng  # seeded in a simulation: incarnation, election timeouts, failover, cluster id; None: OS entropy
        incarnation = rng.randbytes(4).hex() if rng is not None else secrets.token_hex(4)  # unique across restarts
        self._proposals = Proposals(incarnation=incarnation, clock=clock, metrics=self.metrics,
                                    timeout=opts.proposal_timeout)
        self._applier = Applier(self._proposals, clock=clock, metrics=self.metrics)
        self._snapshots = Snapshots(self._applier, self._wal, every=opts.snapshot_every, metrics=self.metrics,
                                    log=logger)
        # Linearizable reads: requests that arrive while a round is in flight wait for
        # the next round, which begins after they arrived (zero/replica/reads.py).
        self._reads = ReadRounds(
            incarnation=incarnation, request=self._request_read_index,
            round_timeout=READ_ROUND_TIMEOUTS * opts.election_timeout, read_timeout=opts.read_timeout,
            observe=self.metrics.read_index_seconds.observe, clock=clock)
        self._loop: ReadyLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Reads in flight were for our leadership: when it is lost they fail fast, and the
        # clients retry with the new leader.
        self.leadership = Leadership(clock=clock, metrics=self.metrics, log=logger, on_lost=lambda: self._reads.fail_all(
            UnavailableError("this zero lost leadership; retry on the new leader")))
        # Callbacks: leadership changes and applied batches (streams, leases).
        self.on_leadership = self.leadership.callbacks
        self.on_applied: list[Callable[[list[Applied]], None]] = []
        self.on_state_reset: list[Callable[[], None]] = []
        self.leader_changes = self.leadership.changes  # (wall time, term, leader)
        self.membership = Membership(self, clock)
        self.lease_repair = LeaseRepair(opts.data_dir, opts.lease_margin, logger)
        self.removed = asyncio.Event()  # set when this zero learns it was removed; the app exits
        self.removed_reason = ""
        self._join_cluster_id = ""  # from the join answer, until the state has caught up
        self._join_peers: dict[int, str] = {}
        self.failover = CrashFailover(clock=clock, rng=rng or random.Random(), max_delay=opts.election_timeout / 5,
                                      log=logger, leadership=self.leadership)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the Raft loop on the storage this node was given: a new data dir
        bootstraps a single-member cluster, or joins through opts.peer; restarts keep
        their identity. The storage is closed when the start fails."""
        opts = self.opts
        storage = self._wal.storage
        self.transport.start(self)
        try:
            self.lease_repair.opened(storage)
            origin = await find_origin(opts, self.transport, self.log)
            rid = self.raft_id = origin.raft_id
            self._join_cluster_id = origin.cluster_id
            self._join_peers = dict(origin.peers or {})
            self.metrics.raft_id.set(rid)
            self._applier.restore(storage.snapshot())
            self.leadership.term = storage.initial_state()[0].term
            config = raft_config(opts, rid, storage, self._applier.applied, self.log, rng=self.rng)
            check_restorable(self.state, rid)
        except BaseException:
            self._wal.close_now()
            raise
        self._node = node = start_raft(opts, origin, config, storage, self.log)
        self._refresh_peers()
        self._loop = ReadyLoop(
            node, wal=self._wal, applier=self._applier, snapshots=self._snapshots, reads=self._reads,
            clock=self.clock, metrics=self.metrics, log=self.log, tick_seconds=opts.tick_seconds,
            leadership=self.leadership, send=self._send, on_applied=self._on_applied,
            on_snapshot_installed=self._on_snapshot_installed, on_failure=self._on_failure)
        self._loop.start()
        self._tasks = [asyncio.get_running_loop().create_task(keep_my_addr(self), name="zero-my-addr")]

    async def hand_over_leadership(self) -> None:
        """A leader with other voters hands leadership to the best follower before it
        goes away (SPEC semantics 6), bounded by opts.transfer_on_stop. The peer
        transport must still be serving while this runs."""
        if (self.is_leader and self._node is not None and self._fatal is None and not self.removed.is_set()
                and not self._stopping and len(self._node.status().voters) > 1 and self.opts.transfer_on_stop > 0):
            try:
                to = await self.membership.transfer_leadership(0, timeout=self.opts.transfer_on_stop)
                self.log.info("handed leadership over before stopping", to=to)
            except ZeroError as e:
                self.log.warning("could not hand leadership over before stopping", error=str(e))

    async def stop(self) -> None:
        """Hand leadership over (a leader with other voters, bounded by
        opts.transfer_on_stop), stop ticking and the Ready loop, fail waiters, stop the
        transport, sync and close the WAL. Also after a failed or no start."""
        if self._stopping:
            return
        await self.hand_over_leadership()
        self._stopping = True
        if self._node is not None:
            await self._node.stop()
        for t in self._tasks:
            t.cancel()
        self.failover.cancel()
        if self._loop is not None:
            await self._loop.stop()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, NodeStoppedError):
                pass
        self._fail_all(UnavailableError("zero is shutting down"))
        await self.transport.stop()
        await self._wal.close()

    def _running(self, *, healthy: bool = False) -> Node:
        """raftcore's Node while this zero runs (and, `healthy`, its Ready loop has not failed)."""
        node = self._node
        if node is None or self._stopping or (healthy and self._fatal is not None):
            raise UnavailableError("zero is not running")
        return node

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the Ready loop (a failed fsync ends the process)."""
        return self._fatal

    # -- status ------------------------------------------------------------------------------
    @property
    def state(self) -> ZeroState:
        """The replicated state as applied here (replaced wholesale by a leader's snapshot)."""
        return self._applier.state

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    @property
    def leader_id(self) -> int:
        return self.leadership.lead

    @property
    def term(self) -> int:
        return self.leadership.term

    @property
    def applied(self) -> int:
        return self._applier.applied

    @property
    def snapshot_index(self) -> int:
        """The index of the newest snapshot stored or installed here."""
        return self._applier.snapshot_index

    def raft_status(self) -> Status:
        assert self._node is not None
        return self._node.status()

    @property
    def last_index(self) -> int:
        """The index of the last entry of this zero's Raft log (persisted or not)."""
        assert self._node is not None
        return self._node.last_index()

    def election_elapsed(self) -> int | None:
        """Ticks since the election timer was reset (a follower: since it last heard from
        its leader); None before Raft runs."""
        return self._node.election_elapsed() if self._node is not None else None

    @property
    def raft_started(self) -> bool:
        return self._node is not None and not self._stopping

    @property
    def cluster_id(self) -> str:
        """The cluster this zero belongs to (from the join answer until the state has it)."""
        return self.state.cluster_id or self._join_cluster_id

    @property
    def lease_bump_pending(self) -> bool:
        """True from a WAL repair until the lease ceilings were raised (no ids meanwhile: duties.py)."""
        return self.lease_repair.pending

    def leader_hint(self) -> list[tuple[str, str]]:
        """Trailing metadata naming the leader, for replies from a zero that is not it."""
        return leader_hint(self.leadership.lead, self.raft_id, self.state.zeros, self._join_peers)

    # -- what the Ready loop calls back ------------------------------------------------------------
    def _send(self, msgs: list[raftpb.Message]) -> None:
        # Never awaits: the transport queues per peer and its writer tasks do the I/O.
        if self.removed.is_set():
            return
        send = self.transport.send
        me = self.raft_id
        node = self._node
        for msg in msgs:
            if msg.to != me:
                if msg.type == raftpb.MsgSnap and node is not None:
                    msg = self._snapshots.fresh(msg, node)
                send(msg)

    def _on_applied(self, applied: list[Applied]) -> None:
        if any(a.delta.zeros or a.delta.removed_zeros for a in applied):
            self._refresh_peers()
            if self.state.is_removed(self.raft_id, zero=True):
                self.mark_removed("its removal was applied")
        for cb in self.on_applied:
            cb(applied)

    def _on_snapshot_installed(self) -> None:
        self._refresh_peers()
        if self.state.is_removed(self.raft_id, zero=True):
            self.mark_removed("the leader's snapshot lists it as removed")
        for cb in self.on_state_reset:
            cb()

    def _on_failure(self, e: BaseException) -> None:
        self._fatal = e
        self.log.error("raft loop failed; this zero stops serving", error=repr(e))
        self._fail_all(UnavailableError(f"zero stopped: {e}"))

    async def take_snapshot(self) -> int:
        """Snapshot the applied state and compact the log behind it; returns its index."""
        return await self._snapshots.take()

    def stored_snapshot(self) -> raftpb.Snapshot:
        """The newest snapshot in storage (what ZeroAdmin.Snapshot reports)."""
        return self._wal.storage.snapshot()

    # -- the PeerHost the transport delivers to (event loop, never mid-Ready) ------------------------
    @property
    def join_peers(self) -> Mapping[int, str]:
        """The zeros a joiner's answer named, until its state has caught up (then empty):
        the transport accepts their messages before the state lists them."""
        return MappingProxyType(self._join_peers)

    def step_peer(self, msg: raftpb.Message) -> None:
        """Step a message from a peer (the transport calls this; dropped once stopping)."""
        if self._node is None or self._stopping or self.removed.is_set():
            return
        self._node.step_nowait(msg)

    def report_unreachable(self, rid: int) -> None:
        if self._node is not None and not self._stopping:
            self._node.report_unreachable(rid)

    def peer_lost(self, rid: int) -> None:
        """The connection to zero `rid` was reset or refused (zero/replica/failover.py)."""
        if self._node is not None and not self._stopping:
            self.failover.peer_lost(rid, self._node)

    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None:
        if self._node is not None and not self._stopping:
            self._node.report_snapshot(rid, status)

    def mark_removed(self, reason: str) -> None:
        """This zero was removed from the cluster: stop talking to it and tell the app."""
        if self.removed.is_set():
            return
        self.removed_reason = reason
        self.removed.set()
        self.log.error("this zero was removed from the cluster and stops; start a new zero with a fresh "
                       "data dir and --peer to join again", raft_id=self.raft_id, reason=reason)
        self._fail_all(UnavailableError(f"zero {self.raft_id} was removed from the cluster"))

    def _refresh_peers(self) -> None:
        if self.state.zeros and self._join_peers and self.state.cluster_id:
            self._join_peers = {}  # caught up: the replicated state is the truth now
        addrs = {rid: z.addr for rid, z in self.state.zeros.items()}
        for rid, addr in self._join_peers.items():
            addrs.setdefault(rid, addr)
        self.transport.set_peers(addrs)

    # -- proposals (zero/replica/proposals.py) ---------------------------------------------------
    def new_key(self) -> str:
        return self._proposals.new_key(self.raft_id)

    async def propose(self, proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied:
        """Propose a change and wait until it is applied here; returns its result or
        raises the ZeroError apply raised. UNAVAILABLE when there is no leader or the
        change was not applied in time (its outcome is then unknown: retrying with the
        same key is safe)."""
        node = self._running(healthy=True)
        check_proposal(proposal, self.state.cluster_version)  # versions.py: no entry some zero cannot decode
        if not proposal.key:
            proposal.key = self.new_key()
        return await self._proposals.propose(node, proposal, timeout)

    async def propose_conf_change(self, cc: raftpb.ConfChange | raftpb.ConfChangeV2,
                                  proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied:
        """Propose a Raft membership change carrying a state change in its context, so
        the Raft configuration and the zeros in ZeroState change at the same index."""
        node = self._running()
        check_proposal(proposal, self.state.cluster_version)
        if not proposal.key:
            proposal.key = self.new_key()
        cc.context = proposal.SerializeToString()
        return await self._proposals.propose_conf_change(node, cc, proposal, timeout)

    def conf_change_pending(self) -> bool:
        """Whether Raft would replace a conf change proposed now: one is unapplied (a
        new leader counts its whole log until it has applied it)."""
        assert self._node is not None
        return self._node.conf_change_pending()

    def check_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Refuse (FailedPreconditionError) a change Raft would refuse to apply, or that
        would demote a voter (zero/replica/confchange.py check_conf_change)."""
        assert self._node is not None
        check_conf_change(self._node, cc)

    async def request_transfer(self, to: int) -> None:
        assert self._node is not None
        await self._node.transfer_leadership(self.raft_id, to)

    # -- membership (zero/replica/membership.py) -----------------------------------------------
    async def handle_join(self, req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse:
        """JoinCluster: on the leader, add the caller as a learner; elsewhere UNAVAILABLE
        (the servicer adds the leader's address for the caller to follow)."""
        self._running()
        return await self.membership.handle_join(req)

    async def remove_zero(self, raft_id: int, *, timeout: float = CONF_CHANGE_TIMEOUT) -> zero_pb2.Member:
        """Remove zero `raft_id` (on the leader). FailedPreconditionError for the last
        zero or a removal that leaves no live quorum; removing the leader itself hands
        leadership over first. Returns the removed member."""
        self._running()
        return await self.membership.remove_zero(raft_id, timeout=timeout)

    async def transfer_leadership(self, to: int = 0, *, timeout: float | None = None) -> int:
        """Hand leadership to voter `to` (0: the best live voter) and wait until it has
        moved; returns the new leader's id. UnavailableError on timeout."""
        self._running()
        return await self.membership.transfer_leadership(to, timeout=timeout)

    async def raise_leases_after_repair(self) -> None:
        """Leader duty after a WAL repair (zero/replica/duties.py LeaseRepair); nothing
        to do otherwise."""
        await self.lease_repair.raise_leases(self)

    # -- linearizable reads ---------------------------------------------------------------------
    async def read_barrier(self, *, timeout: float | None = None) -> None:
        """Return once this zero has applied everything committed before the call,
        confirmed by a quorum round that began after the call (ReadIndex, thesis
        §6.4). Concurrent callers share rounds. UNAVAILABLE without a leader/quorum."""
        node = self._running(healthy=True)
        if self.leadership.lead == 0:
            raise UnavailableError("no leader is known; linearizable reads are unavailable")
        local = node.local_read_index()
        if local is not None and self._applier.applied >= local:
            # The only voter, leading: no round to run (raft would answer it with the
            # commit index at once), and everything committed is applied.
            return
        fut = await self._reads.join()
        if timeout is None:
            # The hot path (every timestamp batch, every tablet lookup): one future per
            # caller; the rounds carry the deadline (ReadRounds.expire, read_timeout).
            await fut
            return
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise UnavailableError("linearizable read timed out (no quorum?)") from None

    @property
    def read_rounds(self) -> ReadRounds:
        """The ReadIndex rounds of this zero (for inspection: rounds started)."""
        return self._reads

    async def _request_read_index(self, ctx: bytes) -> None:
        assert self._node is not None
        await self._node.read_index(ctx)

    def _fail_all(self, err: ZeroError) -> None:
        self._reads.fail_all(err)
        self._proposals.fail_all(err)

    async def consistent_snapshot(self) -> tuple[int, int, bytes]:
        """(index, term, ZeroState.snapshot()) of the state as applied after a
        linearizable read barrier: it includes every change acknowledged before the call
        (a backup). No await between reading the index and serializing, so the bytes are
        exactly the state at that index."""
        await self.read_barrier()
        node = self._node
        if node is None:
            raise UnavailableError("zero is not running")
        index = self._applier.applied
        term = self._snapshots.term_at(index, node, self.leadership.term)
        return index, term, self.state.snapshot()
