"""N real zeros in one SimLoop: each built as zero/app.py builds it (build_node, Leases,
Liveness, MembershipHub, the cluster-identity duty, the Oracle and its hub, the Zero
servicer), on a SimTransport, a SimStorage and a SimClock.

Not wired yet (see docs/RELIABILITY.md, "Simulation of the whole daemon"): the move
driver and the rebalancer (they dial data nodes over gRPC), the liveness mirror (it
dials the leader), the HTTP front and the interceptor/forwarding (clients call the
servicer of the zero they chose, as if on the leader's address).

Randomness that zero draws itself comes from the seeded `rng` each incarnation is built
with (build_node's seam): its incarnation token, raftcore's election timeouts, the
failover delay and the cluster id the first leader mints; the transport gets its own.
"""

from __future__ import annotations

import contextvars
import os
import random
from typing import Any

from raftcore import raftpb

from zero.app import build_node
from zero.errors import UnavailableError
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.oracle_service import OracleHub
from zero.frontdoor.stream import MembershipHub
from zero.frontdoor.zero_service import ZeroService
from zero.leader.leases import Leases, _Pool
from zero.leader.oracle import Oracle
from zero.metrics import Metrics
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import state_pb2
from zero.replica.duties import ensure_cluster_identity, run_leader_task
from zero.replica.node import NodeOptions, ZeroNode

from .disk import SimDisk
from .loop import OWNER, SimClock, SimLoop
from .net import SimNetwork, SimTransport
from .trace import Trace

__all__ = ["SimZero", "SimCluster", "SimLogger", "BUG_EVENTS", "PLANTABLE"]

# Known bugs the simulation must catch, planted only when a schedule asks for them
# (each the code as it was before its fix, or the fix left out):
# - ts-without-read-index: Leases hands out timestamps with no ReadIndex round, so a
#   deposed leader that has not noticed yet answers from its block (real-time order;
#   commit 7ae2814).
# - blocks-outlive-term: lease blocks are not dropped on a change of leadership and are
#   used in any term, so a zero leading again hands out timestamps from a block leased
#   before its successor's (real-time order; zero/leader/leases.py).
# - raft-id-before-registered: JoinCluster answered by a new cluster's first leader
#   after its cluster id was applied but before its own AddZero hands out next_raft_id —
#   its own id 1 — and AddLearner(1) demotes the only voter (the Ready loop fails;
#   tests/zero/test_zero_node.py test_join_before_the_first_leader_registered_itself).
# Not plantable here: a WAL cut below its snapshot repaired as a torn tail (the
# simulated disk is a MemoryStorage, not raftcore.wal's files).
PLANTABLE = ("ts-without-read-index", "blocks-outlive-term", "raft-id-before-registered")

# The zeros' tick: twice production's 0.1 s (election timeout 1 s), which halves the
# heartbeats and Ready rounds a simulated second costs; the faults' durations are set
# against it (pauses and crashes of 0.3-5 s outlast an election or not).
TICK = 0.2

# Log lines that are bugs wherever they appear (zero/replica/duties.py, ready_loop.py).
BUG_EVENTS = ("leader duty crashed", "raft loop failed; this zero stops serving")


class SimLogger:
    """zero.log.Logger: drops debug and info; warnings and errors go to the trace."""

    def __init__(self, name: str, trace: Trace, errors: list[str]) -> None:
        self._name = name
        self._trace = trace
        self._errors = errors

    def debug(self, event: str, *args: object, **kw: object) -> None:
        pass

    def info(self, event: str, *args: object, **kw: object) -> None:
        pass

    def warning(self, event: str, *args: object, **kw: object) -> None:
        self._trace.add("warn", self._name, event, sorted(kw.items()))

    def error(self, event: str, *args: object, **kw: object) -> None:
        self._trace.add("error", self._name, event, sorted(kw.items()))
        if event in BUG_EVENTS:
            self._errors.append(f"{self._name}: {event}: {kw}")

    def bind(self, **new_values: object) -> SimLogger:
        return self


class SimZero:
    """One incarnation of one zero (a restart builds a new SimZero on the same disk)."""

    def __init__(self, cluster: SimCluster, name: str, incarnation: int, *, peer: str) -> None:
        self.name = name
        self.owner = f"{name}#{incarnation}"
        self.context = contextvars.copy_context()
        self.context.run(OWNER.set, self.owner)
        c = cluster
        self.clock = SimClock(c.loop, offset=c.rng.uniform(0, 1000), rate=c.rates[name])
        log = SimLogger(name, c.trace, c.errors)
        if name not in c.metrics:  # observational only: kept across restarts (a registry costs)
            c.metrics[name] = Metrics()
        metrics = c.metrics[name]
        self.transport = SimTransport(c.network, name, self.context, log=log, metrics=metrics, clock=self.clock,
                                      rng=random.Random(c.rng.getrandbits(64)))
        self.storage = c.disks[name].open()
        opts = NodeOptions(data_dir=os.path.join(c.data_root, name.split(":")[0]), my_addr=name, tick_seconds=c.tick,
                           election_ticks=c.election_ticks, snapshot_every=c.snapshot_every, peer=peer,
                           join_timeout=30.0, transfer_on_stop=0.0)
        node = self.node = build_node(opts, transport=self.transport, logger=log, metrics=metrics,
                                      storage=self.storage, clock=self.clock,
                                      rng=random.Random(c.rng.getrandbits(64)))
        self.transport.join_handler = node.handle_join
        if "raft-id-before-registered" in c.bugs:
            self.transport.join_handler = _plant_join_before_registered(node)
        leases = self.leases = Leases(node)
        if "blocks-outlive-term" in c.bugs:
            _plant_blocks_outlive_term(leases)
        else:
            node.on_leadership.append(leases.leadership_changed)
        if "ts-without-read-index" in c.bugs:
            _plant_ts_without_read_index(leases)
        liveness = Liveness(node, window=10.0, clock=self.clock.monotonic, wall=self.clock.wall)
        node.on_leadership.append(liveness.on_leadership)
        hub = MembershipHub(node, overlay=liveness.overlay)
        node.on_applied.append(hub.on_applied)
        node.on_state_reset.append(hub.on_state_reset)
        liveness.on_flags_changed = hub.bump
        node.on_leadership.append(run_leader_task(node, lambda: ensure_cluster_identity(node), "cluster-identity"))
        oracle = self.oracle = Oracle(node, leases, liveness, liveness_window=10.0, retention=30.0, log=log,
                                      metrics=metrics, clock=self.clock.monotonic)
        oracle_hub = OracleHub(oracle)
        oracle.sinks.append(oracle_hub.publish)
        node.on_leadership.append(oracle.on_leadership)
        node.on_leadership.append(oracle_hub.on_leadership)
        node.on_applied.append(oracle.on_applied)
        leases.on_handed_out.append(oracle.handed_out)
        node.on_leadership.append(run_leader_task(node, oracle.leader_duty, "oracle"))
        self.service = ZeroService(node, leases, liveness, hub, oracle, oracle_hub, admin_token=None, replicas=1)
        self.started = False
        self.failed: BaseException | None = None

    async def start(self) -> None:
        try:
            await self.node.start()
            self.started = True
        except Exception as e:  # e.g. a join that timed out: the harness restarts it later
            self.failed = e

    @property
    def up(self) -> bool:
        n = self.node
        return self.started and n.raft_started and n.fatal is None and not n.removed.is_set()


class SimCluster:
    """The zeros of one schedule: z1..zN at first (z1 bootstraps, the others join
    through it), then whatever membership changes made of it. `names` are the members
    (booted, not retired), `zeros` every address ever used. A zero added later joins
    through a member (JoinCluster, the real path); a removal is the leader's
    remove_zero (RemoveNode's path); once a live zero's state says a zero was removed,
    `reap` retires it (stops it for good, as an operator would)."""

    def __init__(self, loop: SimLoop, rng: random.Random, trace: Trace, data_root: str, n: int, *,
                 tick: float = TICK, election_ticks: int = 5, snapshot_every: int = 200,
                 bugs: frozenset[str] = frozenset()) -> None:
        self.bugs = bugs
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.data_root = data_root
        self.tick = tick
        self.election_ticks = election_ticks
        self.snapshot_every = snapshot_every
        self.errors: list[str] = []
        self.metrics: dict[str, Metrics] = {}
        self.network = SimNetwork(loop, rng, trace)
        self.names: list[str] = []  # the members; names are the zeros' addresses
        self.first = "z1:5080"  # bootstraps the cluster
        self.retired: list[str] = []
        self.disks: dict[str, SimDisk] = {}
        self.zeros: dict[str, SimZero | None] = {}
        self.rates: dict[str, float] = {}  # each zero's clock rate (skew), kept across its restarts
        self.rids: dict[str, int] = {}  # each zero's raft id, once it had one
        self._incarnations: dict[str, int] = {}
        self.crashes = self.restarts = self.pauses = self.skews = 0
        for _ in range(n):
            self.new_name()

    def new_name(self) -> str:
        """A fresh address (and disk) for a zero about to be added."""
        name = f"z{len(self.zeros) + 1}:5080"
        self.names.append(name)
        self.disks[name] = SimDisk(random.Random(self.rng.getrandbits(64)))
        self.zeros[name] = None
        self.rates[name] = 1.0
        self._incarnations[name] = 0
        return name

    def boot(self, name: str, peer: str = "") -> SimZero:
        """Start (or restart) zero `name`: a new incarnation on its disk and data dir;
        a new zero joins through `peer` (default: the first other member)."""
        assert self.zeros[name] is None and name not in self.retired
        self._incarnations[name] += 1
        if name == self.first:
            peer = ""
        elif not peer:
            peer = next(n for n in self.names if n != name)
        z = SimZero(self, name, self._incarnations[name], peer=peer)
        self.zeros[name] = z
        self.loop.create_task(z.start(), context=z.context)
        self.trace.add("boot", z.owner)
        return z

    def crash(self, name: str) -> None:
        """kill -9: tasks gone, unsynced writes lost (a seeded part of them), links down."""
        z = self.zeros[name]
        if z is None:
            return
        self.zeros[name] = None
        if z.node.raft_id:
            self.rids[name] = z.node.raft_id
        self.disks[name].crash()
        self.network.detach(z.transport)
        self.loop.cancel_owner(z.owner)
        self.crashes += 1
        self.trace.add("crash", z.owner)

    def pause(self, name: str) -> None:
        """SIGSTOP: zero `name` runs nothing (no tick, no message, no answer) until resumed;
        what others send it waits for it, as in its sockets' buffers."""
        z = self.zeros[name]
        if z is not None and z.owner not in self.loop.paused:
            self.loop.pause(z.owner)
            self.pauses += 1
            self.trace.add("pause", z.owner)

    def resume(self, name: str) -> None:
        z = self.zeros[name]
        if z is not None and z.owner in self.loop.paused:
            self.loop.resume(z.owner)
            self.trace.add("resume", z.owner)

    def skew(self, name: str, rate: float) -> None:
        """Zero `name`'s monotonic clock runs at `rate` from now on (and after restarts)."""
        self.rates[name] = rate
        self.skews += 1
        z = self.zeros[name]
        if z is not None:
            z.clock.set_rate(rate)
        self.trace.add("skew", name, rate)

    def raft_id(self, name: str) -> int:
        z = self.zeros[name]
        return z.node.raft_id if z is not None and z.node.raft_id else self.rids.get(name, 0)

    def reap(self) -> list[str]:
        """Retire every member a live zero's state says was removed; returns them."""
        gone = []
        for name in list(self.names):
            rid = self.raft_id(name)
            if rid and any(z.node.state.is_removed(rid, zero=True) for z in self.live()):
                self.crash(name)
                self.names.remove(name)
                self.retired.append(name)
                self.trace.add("retired", name, rid)
                gone.append(name)
        return gone

    def live(self) -> list[SimZero]:
        return [z for z in self.zeros.values() if z is not None and z.up]

    def down(self) -> list[str]:
        """Members not running: crashed, or their start failed (a join that timed out)."""
        out = []
        for name in self.names:
            z = self.zeros[name]
            if z is not None and z.failed is not None:
                self.crash(name)
                z = None
            if z is None:
                out.append(name)
        return out

    def leader(self) -> SimZero | None:
        leaders = [z for z in self.live() if z.node.is_leader]
        return max(leaders, key=lambda z: z.node.term) if leaders else None

    def by_raft_id(self, rid: int) -> SimZero | None:
        for z in self.live():
            if z.node.raft_id == rid:
                return z
        return None

    def run_in(self, z: SimZero, coro: Any) -> Any:
        """A task of zero `z` (cancelled with it on a crash)."""
        return self.loop.create_task(coro, context=z.context)

    def shutdown(self) -> None:
        for owner in list(self.loop.owned):
            self.loop.cancel_owner(owner)


def _plant_ts_without_read_index(leases: Leases) -> None:
    async def assign(kind: Any, count: int) -> Any:
        if not leases.node.is_leader:
            raise UnavailableError("this zero is not the leader")
        return await leases._hand_out(leases._pools[kind], count)

    leases.assign = assign  # type: ignore[method-assign]


class _AnyTermPool(_Pool):
    """A lease pool that takes from blocks of any term (blocks-outlive-term)."""

    __slots__ = ()

    def take(self, term: int, count: int) -> tuple[int, int] | None:
        while self.blocks:
            b = self.blocks[0]
            if b.remaining >= count:
                start = b.next
                b.next += count
                if b.remaining == 0:
                    self.blocks.pop(0)
                return start, start + count - 1
            self.blocks.pop(0)
        return None


def _plant_blocks_outlive_term(leases: Leases) -> None:
    for pool in leases._pools.values():
        pool.__class__ = _AnyTermPool


def _plant_join_before_registered(node: ZeroNode) -> Any:
    async def handle_join(req: tpb.JoinClusterRequest) -> tpb.JoinClusterResponse:
        if node.is_leader:
            await node.read_barrier()
            st = node.state
            if st.cluster_id and node.raft_id not in st.zeros and not req.raft_id:
                rid = st.next_raft_id  # the code before the fix: still this zero's own id
                cc = raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=rid)
                await node.propose_conf_change(cc, state_pb2.Proposal(
                    add_zero=state_pb2.AddZero(raft_id=rid, addr=req.addr, version=req.version)))
                return node.membership._join_answer(rid)
        return await node.handle_join(req)

    return handle_join
