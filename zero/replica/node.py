"""ZeroNode: one zero's Raft replica — the Ready loop on the WAL, proposals that wait for
their own apply, batched linearizable reads, snapshots, and leader-only duties.

Data flow (one Ready):
  1. send rd.messages (they never depend on this Ready's unpersisted state, so a
     leader replicates while its own fsync is in flight — thesis §10.2.1);
  2. persist snapshot/entries/hard state through DiskStorage.save, in a worker thread
     so the event loop keeps serving (one fdatasync per Ready when must_sync);
  3. install a received snapshot, apply committed entries to ZeroState (conf changes
     through apply_conf_change), resolve the proposers waiting on them, answer reads;
  4. advance(); every N applied entries, snapshot the state and compact the log.

The event loop owns RawNode (through raftcore.Node) and ZeroState; the worker thread
only writes files. The core reads DiskStorage's in-memory view only below the unstable
offset, which save() never changes, so the two never touch the same entries.

Peers: `self.transport` (zero/replica/transport.py) carries messages to the other zeros; its
peer list follows `state.zeros` (and, while a joiner catches up, its join answer). A new
data dir with `peer` set joins an existing cluster through JoinCluster instead of
bootstrapping; membership changes and leadership transfer live in zero/replica/membership.py.

Lifecycle for the app (the CLI wires these):

    node = ZeroNode(NodeOptions(data_dir=..., my_addr=..., peer=...), logger=log)
    server = grpc.aio.server(options=transport.GRPC_OPTIONS)
    transport.add_raft_service(server, node)       # before server.start()
    server.add_insecure_port(grpc_addr); await server.start()
    await node.start()                             # bootstrap, restart or join
    node.on_leadership.append(run_leader_task(node, node.ensure_cluster_identity, "identity"))
    await node.removed.wait() / signal             # a removed zero exits
    await node.stop()                              # hands leadership over first
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import time
import uuid
from types import MappingProxyType
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raftcore import (
    ConfChangeError,
    RaftError,
    Config,
    Node,
    NodeStoppedError,
    ProposalDroppedError,
    Ready,
    StateType,
    Status,
    raftpb,
)
from raftcore.wal import DiskStorage
from raftcore.wal.files import fsync_dir

from raftcore import SnapshotStatus

from zero.errors import FailedPreconditionError, UnavailableError, ZeroError
from zero.replica.identity import (
    LEASE_BUMP_FILE,
    Identity,
    load_identity,
    load_join_answer,
    save_identity,
    save_join_answer,
    write_marker,
)
from zero.replica.membership import ConfChangeDroppedError, Membership, join_cluster
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2, state_pb2, zero_pb2
from zero.replica.reads import ReadRounds, fail
from zero.state.machine import Applied, ZeroState
from zero.replica.transport import Transport
from zero.state.versions import ZERO_VERSION, check_proposal

__all__ = ["ZeroNode", "NodeOptions"]

# Keep this many entries behind a snapshot, so a briefly lagging follower catches up
# from the log instead of needing the whole snapshot.
CATCHUP_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class NodeOptions:
    data_dir: str
    my_addr: str
    raft_id: int = 0  # 0: from the data dir's identity, else 1 for a new cluster
    tick_seconds: float = 0.1
    election_ticks: int = 5
    heartbeat_ticks: int = 1
    snapshot_every: int = 10_000
    replicas: int = 1
    proposal_timeout: float = 5.0
    read_timeout: float = 5.0
    peer: str = ""  # HOST:PORT of any live zero: a new data dir joins that cluster
    join_timeout: float = 60.0  # how long a join keeps retrying before start() fails
    transfer_on_stop: float = 2.0  # a leader hands leadership over for at most this long on stop
    lease_margin: int = 1_000_000  # ids skipped above the leases after a WAL whose damaged tail was cut off


class ZeroNode:
    """One zero's replica of the Raft group and of ZeroState."""

    def __init__(self, opts: NodeOptions, *, logger: Any, metrics: Metrics | None = None) -> None:
        self.opts = opts
        self.log = logger
        self.metrics = metrics or Metrics()
        self.state = ZeroState()
        self.raft_id = 0
        self._storage: DiskStorage | None = None
        self._node: Node | None = None
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zero-wal")
        self._tasks: list[asyncio.Task[Any]] = []
        self._conf_state = raftpb.ConfState()
        self._applied = 0
        self._gauges_at = 0.0  # monotonic time of the last state-gauge update
        self._snapshot_index = 0
        self._lead = 0
        self._role = StateType.FOLLOWER
        self._term = 0
        self._stopping = False
        self._fatal: BaseException | None = None
        # Proposals waiting for their own apply, by dedup key.
        self._incarnation = secrets.token_hex(4)
        self._seq = 0
        self._waiters: dict[str, tuple[asyncio.Future[Applied], float]] = {}
        # Linearizable reads: requests that arrive while a round is in flight wait for
        # the next round, which begins after they arrived (zero/replica/reads.py).
        self._reads = ReadRounds(
            incarnation=self._incarnation, request=self._request_read_index,
            round_timeout=opts.tick_seconds * opts.election_ticks * 2, read_timeout=opts.read_timeout,
            observe=self.metrics.read_index_seconds.observe)
        # Callbacks: leadership changes and applied batches (streams, leases).
        self.on_leadership: list[Callable[[bool, int], None]] = []
        self.on_applied: list[Callable[[list[Applied]], None]] = []
        self.on_state_reset: list[Callable[[], None]] = []
        self.leader_changes: list[tuple[float, int, int]] = []  # (wall time, term, leader)
        # Peers and membership.
        self.transport = Transport(self)
        self.membership = Membership(self)
        self.removed = asyncio.Event()  # set when this zero learns it was removed; the app exits
        self.removed_reason = ""
        self._join_cluster_id = ""  # from the join answer, until the state has caught up
        self._join_peers: dict[int, str] = {}
        self._cc_index: dict[int, str] = {}  # our conf change's log index -> its proposal key
        self._background: list[asyncio.Task[Any]] = []
        self._io_jobs = 0  # calls running in (or queued for) the WAL thread

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the data dir (creating or recovering it) and start the Raft loop. A new
        data dir bootstraps a single-member cluster; restarts keep their identity."""
        opts = self.opts
        os.makedirs(opts.data_dir, exist_ok=True)
        ident = load_identity(opts.data_dir)
        # The WAL is opened (and locked) before the cluster is contacted: a zero holds
        # every resource it needs before a join makes it a member (ZeroApp binds both
        # ports before this), so a join is never followed by a failure to start.
        self._storage = DiskStorage.open(os.path.join(opts.data_dir, "wal"), logger=self.log)
        storage = self._storage
        if storage.repaired is not None:
            # The cut-off records may have been synced lease blocks whose ids were handed
            # out: until the ceilings are raised by the margin (a leader duty), this zero
            # hands out no ids. The marker survives restarts until that is done.
            write_marker(opts.data_dir, LEASE_BUMP_FILE, storage.repaired)
            self.log.warning("the WAL's damaged tail was cut off; leases will continue above a margin",
                             repaired=storage.repaired, margin=opts.lease_margin)
        self._lease_bump_pending = os.path.exists(os.path.join(opts.data_dir, LEASE_BUMP_FILE))
        joined: raft_transport_pb2.JoinClusterResponse | None = None
        if ident is None and opts.peer:
            # A new zero joining an existing cluster: the cluster assigns the id.
            try:
                joined = await join_cluster(opts.peer, opts.my_addr, opts.raft_id, timeout=opts.join_timeout,
                                            logger=self.log, credentials=self.transport.credentials)
            except BaseException:
                storage.close()
                self._storage = None
                raise
            rid = joined.raft_id
            fresh = True
            self._join_cluster_id = joined.cluster_id
            self._join_peers = {m.id: m.addr for m in joined.peers}
            save_join_answer(opts.data_dir, joined)
        elif ident is None:
            rid = opts.raft_id or 1
            fresh = True
        else:
            if opts.peer:
                self.log.info("data dir has an identity; ignoring --peer", peer=opts.peer, raft_id=ident.raft_id)
            # A joiner restarted before its state caught up still knows its cluster.
            answer = load_join_answer(opts.data_dir)
            if answer is not None:
                self._join_cluster_id = answer.cluster_id
                self._join_peers = {m.id: m.addr for m in answer.peers}
            rid = ident.raft_id
            fresh = False
            if opts.raft_id and opts.raft_id != rid:
                raise ZeroError(
                    f"data dir {opts.data_dir} belongs to raft id {rid}, not {opts.raft_id}: "
                    "a zero keeps its identity across restarts")
        self.raft_id = rid
        self.metrics.raft_id.set(rid)
        snap = storage.snapshot()
        applied = 0
        if snap.metadata.index > 0:
            self.state = ZeroState.restore(snap.data)
            applied = snap.metadata.index
            self._snapshot_index = applied
            self._conf_state.CopyFrom(snap.metadata.conf_state)
        self._applied = applied
        hs, cs = storage.initial_state()
        self._term = hs.term
        config = Config(
            id=rid, storage=storage, election_tick=opts.election_ticks, heartbeat_tick=opts.heartbeat_ticks,
            applied=applied, max_size_per_msg=1 << 20, max_inflight_msgs=256,
            max_uncommitted_entries_size=64 << 20, check_quorum=True, pre_vote=True, logger=self.log)
        if self.state.is_removed(rid, zero=True):
            storage.close()
            raise FailedPreconditionError(
                f"zero {rid} was removed from its cluster; start with a fresh data dir and --peer to join again")
        if self.state.cluster_version > ZERO_VERSION:
            storage.close()
            raise FailedPreconditionError(
                f"this data dir's cluster runs version {self.state.cluster_version}, newer than this zero "
                f"({ZERO_VERSION}): it may hold entries this zero cannot decode; run a newer zero")
        if fresh and storage.last_index() == 0 and joined is not None:
            # No bootstrap: the leader brings us up to date (log or snapshot).
            self._node = Node.start(config, None)
            save_identity(opts.data_dir, Identity(rid))
            self.log.info("joined a cluster as a learner", raft_id=rid, cluster_id=joined.cluster_id,
                          peers=sorted(self._join_peers))
        elif fresh and storage.last_index() == 0:
            self._node = Node.start(config, [rid])
            save_identity(opts.data_dir, Identity(rid))
            self.log.info("bootstrapping a new cluster", raft_id=rid, data_dir=opts.data_dir)
        else:
            self._node = Node.restart(config)
            self.log.info("restarting from data dir", raft_id=rid, data_dir=opts.data_dir,
                          applied=applied, last_index=storage.last_index(), term=hs.term)
        self._refresh_peers()
        self.on_leadership.append(run_leader_task(self, self.membership.promote_learners, "promote-learners"))
        if self._lease_bump_pending:
            self.on_leadership.append(run_leader_task(self, self._raise_leases_after_repair, "leases-after-repair"))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="zero-ready-loop"),
                       loop.create_task(self._ticker(), name="zero-ticker"),
                       loop.create_task(self._keep_my_addr(), name="zero-my-addr")]

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
        transport, sync and close the WAL."""
        if self._stopping:
            return
        await self.hand_over_leadership()
        self._stopping = True
        for t in self._background:
            t.cancel()
        if self._node is not None:
            await self._node.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, NodeStoppedError):
                pass
        self._fail_all(UnavailableError("zero is shutting down"))
        await self.transport.stop()
        if self._storage is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, self._storage.close)
        self._io.shutdown(wait=True)

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the Ready loop (a failed fsync ends the process)."""
        return self._fatal

    # -- status ------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._role == StateType.LEADER

    @property
    def leader_id(self) -> int:
        return self._lead

    @property
    def term(self) -> int:
        return self._term

    @property
    def applied(self) -> int:
        return self._applied

    def raft_status(self) -> Status:
        assert self._node is not None
        return self._node.status()

    @property
    def raft_started(self) -> bool:
        return self._node is not None and not self._stopping

    @property
    def cluster_id(self) -> str:
        """The cluster this zero belongs to (from the join answer until the state has it)."""
        return self.state.cluster_id or self._join_cluster_id

    def leader_hint(self) -> list[tuple[str, str]]:
        """Trailing metadata naming the leader, for replies from a zero that is not it."""
        lead = self._lead
        if not lead or lead == self.raft_id:
            return []
        md = [("zero-leader-id", str(lead))]
        z = self.state.zeros.get(lead)
        addr = z.addr if z is not None else self._join_peers.get(lead, "")
        if addr:
            md.append(("zero-leader-addr", addr))
        return md

    # -- the Ready loop ------------------------------------------------------------------------
    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.opts.tick_seconds
        next_at = loop.time() + period
        node = self._node
        assert node is not None
        while not self._stopping:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += period
            if loop.time() - next_at > 5 * period:
                next_at = loop.time() + period  # paused (SIGSTOP): don't burst ticks
            node.tick()
            self._reads.expire(leader_known=bool(self._lead))

    async def _run(self) -> None:
        node = self._node
        storage = self._storage
        assert node is not None and storage is not None
        loop = asyncio.get_running_loop()
        m = self.metrics
        try:
            while True:
                rd = await node.ready()
                t0 = time.perf_counter()
                if rd.soft_state is not None:
                    self._on_soft_state(rd)
                if rd.hard_state is not None:
                    self._term = rd.hard_state.term
                    m.term.set(rd.hard_state.term)
                    m.commit_index.set(rd.hard_state.commit)
                self._send(rd.messages)
                # A Ready that only moves the commit index applies first: everything it
                # commits was made durable here by earlier Readys (the commit index
                # itself needs no durability), so the proposers' answers do not wait
                # for its write.
                early = bool(rd.committed_entries) and not rd.entries and rd.snapshot is None and not rd.must_sync
                if early:
                    self._apply(rd.committed_entries)
                if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                    t1 = time.perf_counter()
                    if not rd.must_sync and rd.snapshot is None and self._io_jobs == 0:
                        # Only a new commit index (no fsync, one small write): a thread
                        # hand-off would cost more than the write, on the commit path.
                        self._save(rd)
                    else:
                        await self._in_io(self._save, rd)
                    if rd.must_sync:
                        m.wal_fsync_seconds.observe(time.perf_counter() - t1)
                    # Acks of what is now durable go out before the apply below.
                    self._send(node.persisted(rd))
                if rd.snapshot is not None:
                    self._install_snapshot(rd.snapshot)
                if rd.committed_entries and not early:
                    self._apply(rd.committed_entries)
                for rs in rd.read_states:
                    self._reads.on_read_state(rs.request_ctx, rs.index)
                node.advance(rd)
                self._reads.release(self._applied)
                m.ready_seconds.observe(time.perf_counter() - t0)
                if self._applied - self._snapshot_index >= self.opts.snapshot_every:
                    await self.take_snapshot()
        except (asyncio.CancelledError, NodeStoppedError):
            raise
        except BaseException as e:  # a failed fsync or a bug: stop serving, loudly
            self._fatal = e
            self.log.error("raft loop failed; this zero stops serving", error=repr(e))
            self._fail_all(UnavailableError(f"zero stopped: {e}"))
            raise

    async def _in_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn in the WAL thread. `_io_jobs` tells the Ready loop whether the storage
        is free for an inline write (DiskStorage is never used from two threads at once)."""
        self._io_jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)
        finally:
            self._io_jobs -= 1

    def _save(self, rd: Ready) -> None:
        assert self._storage is not None
        self._storage.save(rd.hard_state, rd.entries, rd.snapshot, must_sync=rd.must_sync)

    def _send(self, msgs: list[raftpb.Message]) -> None:
        # Never awaits: the transport queues per peer and its writer tasks do the I/O.
        if self.removed.is_set():
            return
        send = self.transport.send
        me = self.raft_id
        for msg in msgs:
            if msg.to != me:
                if msg.type == raftpb.MsgSnap:
                    msg = self._fresh_snapshot(msg)
                send(msg)

    def _fresh_snapshot(self, msg: raftpb.Message) -> raftpb.Message:
        """Send the state as applied now rather than the last stored snapshot, as etcd's
        server does. The stored one may predate the recipient's own admission (a zero
        that joined after the last snapshot), and raftcore refuses a snapshot whose
        configuration does not include it; a fresher snapshot also leaves less log to
        catch up. Raft accepts any snapshot at or above the index it chose."""
        index = self._applied
        if index <= msg.snapshot.metadata.index or self._node is None:
            return msg
        log = self._node.rawnode.raft.raft_log
        try:
            term = log.term(index)
        except RaftError:
            return msg  # compacted past the applied index: the stored snapshot will do
        fresh = raftpb.Message()
        fresh.CopyFrom(msg)
        snap = fresh.snapshot
        snap.data = self.state.snapshot()
        snap.metadata.index = index
        snap.metadata.term = term
        snap.metadata.conf_state.CopyFrom(self._conf_state)
        return fresh

    # -- transport callbacks (event loop, never while a Ready is half-processed) -------------------
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

    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None:
        if self._node is not None and not self._stopping:
            self._node.report_snapshot(rid, status)

    def _transfer_peer_addrs(self) -> dict[int, str]:
        addrs = {rid: z.addr for rid, z in self.state.zeros.items()}
        for rid, addr in self._join_peers.items():
            addrs.setdefault(rid, addr)
        return addrs

    def _refresh_peers(self) -> None:
        if self.state.zeros and self._join_peers and self.state.cluster_id:
            self._join_peers = {}  # caught up: the replicated state is the truth now
        self.transport.set_peers(self._transfer_peer_addrs())

    def mark_removed(self, reason: str) -> None:
        """This zero was removed from the cluster: stop talking to it and tell the app."""
        if self.removed.is_set():
            return
        self.removed_reason = reason
        self.removed.set()
        self.log.error("this zero was removed from the cluster and stops; start a new zero with a fresh "
                       "data dir and --peer to join again", raft_id=self.raft_id, reason=reason)
        self._fail_all(UnavailableError(f"zero {self.raft_id} was removed from the cluster"))

    def _on_soft_state(self, rd: Ready) -> None:
        ss = rd.soft_state
        assert ss is not None
        was_leader = self._role == StateType.LEADER
        if ss.lead != self._lead:
            self.metrics.leader_changes.inc()
            self.leader_changes.append((time.time(), self._term, ss.lead))
            del self.leader_changes[:-50]
            self.log.info("leader changed", leader=ss.lead, term=self._node.status().term if self._node else 0)
        self._lead = ss.lead
        self._role = ss.raft_state
        self.metrics.has_leader.set(1 if ss.lead else 0)
        self.metrics.is_leader.set(1 if ss.raft_state == StateType.LEADER else 0)
        now_leader = ss.raft_state == StateType.LEADER
        if now_leader != was_leader:
            if not now_leader:
                # Reads in flight were for our leadership; they fail fast and the
                # clients retry with the new leader.
                self._reads.fail_all(UnavailableError("this zero lost leadership; retry on the new leader"))
            for cb in self.on_leadership:
                cb(now_leader, self._term)

    # -- applying ---------------------------------------------------------------------------------
    def _apply(self, entries: list[raftpb.Entry]) -> None:
        node = self._node
        assert node is not None
        applied: list[Applied] = []
        state = self.state
        waiters = self._waiters
        for e in entries:
            t = e.type
            if t == raftpb.EntryNormal:
                if e.data:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(e.data), applied, waiters)
            elif t == raftpb.EntryConfChange:
                cc = raftpb.ConfChange.FromString(e.data)
                self._conf_state = node.apply_conf_change(cc)
                if cc.context:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(cc.context), applied, waiters)
            elif t == raftpb.EntryConfChangeV2:
                cc2 = raftpb.ConfChangeV2.FromString(e.data)
                self._conf_state = node.apply_conf_change(cc2)
                if cc2.context:
                    self._apply_proposal(e.index, state_pb2.Proposal.FromString(cc2.context), applied, waiters)
            self._applied = e.index
            if self._cc_index:
                self._check_conf_change_slot(e.index)
        self.metrics.applied_index.set(self._applied)
        if applied:
            now = time.monotonic()
            if now - self._gauges_at >= 1.0:
                # The counts walk every group: at most once a second, not per apply.
                self._gauges_at = now
                self._update_state_gauges()
            if any(a.delta.zeros or a.delta.removed_zeros for a in applied):
                self._refresh_peers()
                if self.state.is_removed(self.raft_id, zero=True):
                    self.mark_removed("its removal was applied")
            for cb in self.on_applied:
                cb(applied)

    def _check_conf_change_slot(self, index: int) -> None:
        """Our conf change was appended at `index`; if that index applied without
        resolving its waiter, another entry took the slot (Raft replaced it, or a new
        leader overwrote it): fail the waiter so the change is proposed again."""
        key = self._cc_index.pop(index, None)
        if key is None:
            return
        w = self._waiters.pop(key, None)
        if w is not None and not w[0].done():
            w[0].set_exception(ConfChangeDroppedError(f"conf change at index {index} was replaced"))

    def _apply_proposal(self, index: int, p: state_pb2.Proposal, out: list[Applied],
                        waiters: dict[str, tuple[asyncio.Future[Applied], float]]) -> None:
        w = waiters.pop(p.key, None) if p.key else None
        try:
            a = self.state.apply(index, p)
        except ZeroError as err:
            if w is not None and not w[0].done():
                w[0].set_exception(err)
                self.metrics.proposals.labels("failed").inc()
            return
        out.append(a)
        if w is not None and not w[0].done():
            w[0].set_result(a)
            self.metrics.proposals.labels("ok").inc()
            self.metrics.proposal_seconds.observe(time.monotonic() - w[1])

    def _update_state_gauges(self) -> None:
        s = self.state
        st = s.view  # read-only, no copy
        m = self.metrics
        m.zeros.set(len(st.zeros))
        m.groups.set(len(st.groups))
        m.members.set(sum(len(g.members) for g in st.groups.values()))
        m.tablets.set(sum(len(g.tablets) for g in st.groups.values()))
        m.max_uid.set(s.max_uid)
        m.max_txn_ts.set(s.max_txn_ts)

    def _install_snapshot(self, snap: raftpb.Snapshot) -> None:
        """A snapshot from the leader replaces our state wholesale."""
        self.state = ZeroState.restore(snap.data)
        self._applied = snap.metadata.index
        self._snapshot_index = snap.metadata.index
        self._conf_state.CopyFrom(snap.metadata.conf_state)
        self._update_state_gauges()
        self.log.info("installed snapshot from leader", index=snap.metadata.index, term=snap.metadata.term)
        self._refresh_peers()
        if self.state.is_removed(self.raft_id, zero=True):
            self.mark_removed("the leader's snapshot lists it as removed")
        for cb in self.on_state_reset:
            cb()

    async def take_snapshot(self) -> int:
        """Snapshot the applied state and compact the log behind it; returns the
        snapshot's index (unchanged when nothing new was applied)."""
        storage = self._storage
        assert storage is not None
        index = self._applied
        if index <= self._snapshot_index:
            return self._snapshot_index
        data = self.state.snapshot()
        cs = raftpb.ConfState()
        cs.CopyFrom(self._conf_state)
        compact_to = index - CATCHUP_ENTRIES

        def work() -> None:
            storage.create_snapshot(index, cs, data)
            if compact_to > storage.first_index():
                storage.compact(compact_to)

        await self._in_io(work)
        self._snapshot_index = index
        self.metrics.snapshots.inc()
        self.metrics.snapshot_bytes.set(len(data))
        self.log.info("snapshot taken", index=index, bytes=len(data), compacted_to=max(compact_to, 0))
        return index

    # -- proposals -------------------------------------------------------------------------------
    def new_key(self) -> str:
        self._seq += 1
        return f"{self.raft_id}.{self._incarnation}.{self._seq}"

    async def propose(self, proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied:
        """Propose a change and wait until it is applied here; returns its result or
        raises the ZeroError apply raised. UNAVAILABLE when there is no leader or the
        change was not applied in time (its outcome is then unknown: retrying with the
        same key is safe)."""
        node = self._node
        if node is None or self._stopping or self._fatal is not None:
            raise UnavailableError("zero is not running")
        check_proposal(proposal, self.state.cluster_version)  # versions.py: no entry some zero cannot decode
        if not proposal.key:
            proposal.key = self.new_key()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Applied] = loop.create_future()
        self._waiters[proposal.key] = (fut, time.monotonic())
        try:
            try:
                await node.propose(proposal.SerializeToString())
            except ProposalDroppedError as e:
                self.metrics.proposals.labels("dropped").inc()
                raise UnavailableError(f"no leader can accept the change right now ({e}); retry") from None
            try:
                # asyncio.timeout, not wait_for(shield(fut)): the apply's set_result wakes
                # this task directly instead of through two more callback hops (every
                # replicated write's latency). The future is ours alone: a cancel is safe.
                async with asyncio.timeout(timeout or self.opts.proposal_timeout):
                    return await fut
            except TimeoutError:
                self.metrics.proposals.labels("timeout").inc()
                raise UnavailableError(
                    f"the change was not applied within {timeout or self.opts.proposal_timeout:.1f}s "
                    "(no quorum?); its outcome is unknown, retry") from None
        finally:
            self._waiters.pop(proposal.key, None)

    async def propose_conf_change(self, cc: raftpb.ConfChange | raftpb.ConfChangeV2,
                                  proposal: state_pb2.Proposal, *, timeout: float | None = None) -> Applied:
        """Propose a Raft membership change carrying a state change in its context, so
        the Raft configuration and the zeros in ZeroState change at the same index."""
        node = self._node
        if node is None or self._stopping:
            raise UnavailableError("zero is not running")
        check_proposal(proposal, self.state.cluster_version)
        if not proposal.key:
            proposal.key = self.new_key()
        cc.context = proposal.SerializeToString()
        fut: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._waiters[proposal.key] = (fut, time.monotonic())
        try:
            try:
                await node.propose_conf_change(cc)
            except ProposalDroppedError as e:
                raise UnavailableError(f"membership change dropped ({e}); retry") from None
            raft = node.rawnode.raft
            if raft.state == StateType.LEADER:
                # Appended to our log synchronously: remember the slot to notice a replacement.
                self._cc_index[raft.raft_log.last_index()] = proposal.key
            try:
                async with asyncio.timeout(timeout or self.opts.proposal_timeout):
                    return await fut
            except TimeoutError:
                raise UnavailableError("membership change not applied in time; its outcome is unknown") from None
        finally:
            self._waiters.pop(proposal.key, None)
            for i in [i for i, k in self._cc_index.items() if k == proposal.key]:
                del self._cc_index[i]

    def conf_change_pending(self) -> bool:
        """Whether Raft would replace a conf change proposed now: one is unapplied (a
        new leader counts its whole log until it has applied it)."""
        assert self._node is not None
        return self._node.rawnode.conf_change_pending()

    def check_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Refuse (FailedPreconditionError) a change that Raft would refuse to apply to
        the current configuration, or that would demote a voter (zero never does).
        With no conf change pending, the current configuration is the one the change
        will be applied to. A committed change that cannot be applied stops the Ready
        loop of every zero applying it, and again at every restart (it is replayed)."""
        assert self._node is not None
        st = self.raft_status()
        what = f"{raftpb.ConfChangeType.Name(cc.type)}({cc.node_id})"
        if cc.type == raftpb.ConfChangeAddLearnerNode and cc.node_id in st.voters:
            raise FailedPreconditionError(f"membership change {what} would demote voter {cc.node_id}")
        try:
            self._node.rawnode.check_conf_change(cc)
        except ConfChangeError as e:
            raise FailedPreconditionError(
                f"membership change {what} cannot apply to the configuration (voters {sorted(st.voters)}, "
                f"learners {sorted(st.learners)}): {e}") from None

    async def request_transfer(self, to: int) -> None:
        assert self._node is not None
        await self._node.transfer_leadership(self.raft_id, to)

    # -- membership (zero/replica/membership.py) ---------------------------------------------------------
    async def handle_join(self, req: raft_transport_pb2.JoinClusterRequest) -> raft_transport_pb2.JoinClusterResponse:
        """JoinCluster: on the leader, add the caller as a learner; elsewhere UNAVAILABLE
        (the servicer adds the leader's address for the caller to follow)."""
        if self._node is None or self._stopping:
            raise UnavailableError("zero is not running")
        return await self.membership.handle_join(req)

    async def remove_zero(self, raft_id: int, *, timeout: float = 10.0) -> zero_pb2.Member:
        """Remove zero `raft_id` (on the leader). FailedPreconditionError for the last
        zero or a removal that leaves no live quorum; removing the leader itself hands
        leadership over first. Returns the removed member."""
        if self._node is None or self._stopping:
            raise UnavailableError("zero is not running")
        return await self.membership.remove_zero(raft_id, timeout=timeout)

    async def transfer_leadership(self, to: int = 0, *, timeout: float | None = None) -> int:
        """Hand leadership to voter `to` (0: the best live voter) and wait until it has
        moved; returns the new leader's id. UnavailableError on timeout."""
        if self._node is None or self._stopping:
            raise UnavailableError("zero is not running")
        return await self.membership.transfer_leadership(to, timeout=timeout)

    async def _keep_my_addr(self) -> None:
        """A zero restarted with a different --my publishes it: an AddZero with its raft
        id and the new address (a normal proposal; the raft config does not change)."""
        period = max(self.opts.tick_seconds * self.opts.election_ticks, 0.05)
        while not self._stopping and not self.removed.is_set():
            await asyncio.sleep(period)
            z = self.state.zeros.get(self.raft_id)
            if z is None or not self._announce_needed(z) or not self._lead or self.is_leader:
                continue  # the leader does it in ensure_cluster_identity
            try:
                await self.read_barrier()
                z = self.state.zeros.get(self.raft_id)
                if z is not None and self._announce_needed(z):
                    self.log.info("publishing this zero's address and version", old=z.addr, new=self.opts.my_addr,
                                  version=ZERO_VERSION)
                    await self.propose(state_pb2.Proposal(add_zero=state_pb2.AddZero(
                        raft_id=self.raft_id, addr=self.opts.my_addr, version=ZERO_VERSION)))
            except ZeroError as e:
                self.log.info("could not publish this zero's address yet", error=str(e))

    # -- leases after a repaired WAL -------------------------------------------------------------
    @property
    def lease_bump_pending(self) -> bool:
        """True from a WAL repair until the lease ceilings were raised by the margin:
        no ids or timestamps may be handed out meanwhile."""
        return self._lease_bump_pending

    async def _raise_leases_after_repair(self) -> None:
        """Leader duty after a WAL repair: lease (and drop) `lease_margin` ids of each
        kind, so nothing handed out from a cut-off lease record is handed out again,
        then forget the marker. Plain LeaseIds proposals: no new entry kind on the wire."""
        if not self._lease_bump_pending:
            return
        margin = self.opts.lease_margin
        key = self.new_key()
        for kind in (zero_pb2.UID, zero_pb2.TIMESTAMP):
            await self.propose(state_pb2.Proposal(key=f"{key}-{kind}", lease_ids=state_pb2.LeaseIds(
                kind=kind, count=margin)))
        os.unlink(os.path.join(self.opts.data_dir, LEASE_BUMP_FILE))
        fsync_dir(self.opts.data_dir)
        self._lease_bump_pending = False
        self.log.info("lease ceilings raised after the WAL repair", margin=margin,
                      max_uid=self.state.max_uid, max_txn_ts=self.state.max_txn_ts)

    # -- linearizable reads ---------------------------------------------------------------------
    async def read_barrier(self, *, timeout: float | None = None) -> None:
        """Return once this zero has applied everything committed before the call,
        confirmed by a quorum round that began after the call (ReadIndex, thesis
        §6.4). Concurrent callers share rounds. UNAVAILABLE without a leader/quorum."""
        node = self._node
        if node is None or self._stopping or self._fatal is not None:
            raise UnavailableError("zero is not running")
        if self._lead == 0:
            raise UnavailableError("no leader is known; linearizable reads are unavailable")
        local = node.local_read_index()
        if local is not None and self._applied >= local:
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
        fail([fut for fut, _ in self._waiters.values()], err)
        self._waiters.clear()

    # -- leader duties --------------------------------------------------------------------------
    async def ensure_cluster_identity(self) -> None:
        """Run once by a leader: mint the cluster id (randomness enters the state only
        inside the proposal) and register this zero in the membership (or publish its
        new address)."""
        st = self.state
        if not st.cluster_id:
            await self.propose(state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id=str(uuid.uuid4()))))
        z = self.state.zeros.get(self.raft_id)
        if z is None or self._announce_needed(z):  # new, restarted with another --my, or upgraded
            await self.propose(state_pb2.Proposal(add_zero=state_pb2.AddZero(
                raft_id=self.raft_id, addr=self.opts.my_addr, version=ZERO_VERSION)))

    def _announce_needed(self, z: zero_pb2.Member) -> bool:
        """Whether the state's record of this zero (address, announced version) is stale."""
        return z.addr != self.opts.my_addr or self.state.zero_version(self.raft_id) != ZERO_VERSION

    async def consistent_snapshot(self) -> tuple[int, int, bytes]:
        """(index, term, ZeroState.snapshot()) of the state as applied after a
        linearizable read barrier: it includes every change acknowledged before the call
        (a backup). No await between reading the index and serializing, so the bytes are
        exactly the state at that index."""
        await self.read_barrier()
        node = self._node
        if node is None:
            raise UnavailableError("zero is not running")
        index = self._applied
        try:
            term = node.rawnode.raft.raft_log.term(index)
        except RaftError:
            term = self._term  # compacted away: the snapshot's own metadata has it
            if self._storage is not None and self._storage.snapshot().metadata.index == index:
                term = self._storage.snapshot().metadata.term
        return index, term, self.state.snapshot()


def run_leader_task(node: ZeroNode, factory: Callable[[], Awaitable[None]], name: str) -> Callable[[bool, int], None]:
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


async def _guard(node: ZeroNode, factory: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        await factory()
    except asyncio.CancelledError:
        raise
    except ZeroError as e:
        node.log.warning("leader duty failed; it runs again at the next leadership", duty=name, error=str(e))
    except Exception as e:  # a bug: log it loudly, keep the node running
        node.log.error("leader duty crashed", duty=name, error=repr(e))
