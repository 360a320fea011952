"""One seeded schedule: a cluster of real zeros, simulated data-node clients calling the
Zero servicer in-process, a nemesis, then a calm tail and the checks.

Timeline (simulated seconds): z1 bootstraps and the others join (they retry until the
first leader has minted the cluster id); clients connect as data nodes and loop over
timestamps, UIDs, tablet claims and oracle commits; the nemesis acts from STORM_FROM
until `seconds - CALM` (partitions of any shape, one-way cuts, isolating the leader,
drop/duplicate/delay/reorder rates, crashes with restarts after a while, leadership
transfers, pauses — SIGSTOP, mostly of the leader — resumed after a while); then everything heals, the crashed zeros restart, and within the calm tail a
leader must hand out a timestamp. The history is checked with tests/fault's checkers
(unique ids, real-time timestamp order, one owner per tablet) and ours (a decision per
start_ts never changes; commit timestamps never collide with handed-out ones).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from fault.checkers import claims, membership, timestamps_realtime, unique_ids
from fault.history import FAIL, INFO, OK, Op

from zero import buggify
from zero.errors import UnavailableError, ZeroError
from zero.pb import zero_pb2

from .checks import ceilings, decisions
from .cluster import SimCluster, SimZero
from .loop import Deadlock, SimLoop
from .trace import Trace

__all__ = ["Result", "run_schedule", "replay_command", "wait_for_answer", "abandon", "CALM"]

CALM = 8.0  # seconds of healed network at the end
STORM_FROM = 3.0
CALL_TIMEOUT = 3.0
EXPLORE = 0.15  # a client calls a random zero instead of the one it believes leads (stale membership)
TABLETS = [f"pred{i}" for i in range(6)]


@dataclass
class Result:
    seed: int
    seconds: float
    violations: list[str] = field(default_factory=list)
    digest: str = ""
    events: int = 0
    ops: int = 0
    ok_ops: int = 0
    tail: str = ""
    buggified: list[str] = field(default_factory=list)  # the BUGGIFY sites switched on
    faults: dict[str, int] = field(default_factory=dict)  # how many of each fault the schedule injected


def replay_command(seed: int, seconds: float, bugs: frozenset[str] = frozenset()) -> str:
    plant = "".join(f" --plant {b}" for b in sorted(bugs))
    return f".venv/bin/python -m tests.sim --first-seed {seed} --seeds 1 --seconds {seconds:g}{plant} -v"


class _Run:
    def __init__(self, seed: int, seconds: float, loop: SimLoop, data_root: str, zeros: int,
                 bugs: frozenset[str]) -> None:
        self.rng = random.Random(seed)
        self.seconds = seconds
        self.loop = loop
        self.trace = Trace(loop.time)
        self.c = SimCluster(loop, self.rng, self.trace, data_root, zeros, bugs=bugs)
        self.ops: list[Op] = []
        self.guess: dict[str, str] = {}  # client -> the zero it believes leads
        self.changes_rng = random.Random(self.rng.getrandbits(64))

    # -- clients -------------------------------------------------------------------------------
    def _target(self, client: str) -> SimZero | None:
        live = self.c.live()
        if not live:
            return None
        if self.rng.random() >= EXPLORE:
            for z in live:
                if z.name == self.guess.get(client):
                    return z
        return self.rng.choice(live)

    async def call(self, client: str, f: str, args: dict[str, object], fn: object) -> Op:
        op = Op(process=client, f=f, invoke=self.loop.time(), args=args)
        self.ops.append(op)
        z = self._target(client)
        if z is None:
            await asyncio.sleep(0.2)
            op.complete, op.type, op.error = self.loop.time(), FAIL, "no zero is up"
            return op
        task = self.c.run_in(z, fn(z))  # type: ignore[operator]
        await wait_for_answer(task, CALL_TIMEOUT)
        op.complete = self.loop.time()
        if not task.done():
            op.error = "timeout"
            self.guess.pop(client, None)  # try another zero next (it may be paused, or cut off)
        elif task.cancelled():
            op.error = "zero crashed"
        elif isinstance(task.exception(), ZeroError):
            e = task.exception()
            op.type = INFO if isinstance(e, UnavailableError) else FAIL
            op.error = f"{type(e).__name__}: {e}"
            lead = self.c.by_raft_id(z.node.leader_id)
            if lead is not None:
                self.guess[client] = lead.name
            else:
                self.guess.pop(client, None)
        elif (bug := task.exception()) is not None:
            raise bug  # a bug in zero: the schedule fails
        else:
            op.type, op.value = OK, task.result()
            self.guess[client] = z.name
        self.trace.add("op", client, f, args, op.type, op.value, op.error[:60])
        return op

    async def client(self, name: str, group: int) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        connected = False
        while not connected:
            op = await self.call(name, "connect", {"group": group, "addr": f"{name}:7080"},
                                 lambda z: _connect(z, name, group))
            connected = op.type == OK
            if not connected:
                await asyncio.sleep(0.3)
        while True:
            r = rng.random()
            if r < 0.35:
                n = rng.randint(1, 5)
                await self.call(name, "ts", {"count": n}, lambda z: _ids(z, zero_pb2.TIMESTAMP, n))
            elif r < 0.55:
                n = rng.randint(1, 50)
                await self.call(name, "uid", {"count": n}, lambda z: _ids(z, zero_pb2.UID, n))
            elif r < 0.7:
                tablet = rng.choice(TABLETS)
                await self.call(name, "claim", {"tablet": tablet, "group": group}, lambda z: _claim(z, tablet, group))
            else:
                got = await self.call(name, "ts", {"count": 1}, lambda z: _ids(z, zero_pb2.TIMESTAMP, 1))
                if got.type == OK:
                    start = got.value["start"]
                    keys = sorted(rng.sample(range(20), rng.randint(1, 3)))
                    await self.call(name, "commit", {"start_ts": start, "keys": keys},
                                    lambda z: _commit(z, start, keys))
            await asyncio.sleep(rng.uniform(0.0, 0.1))

    # -- the nemesis ---------------------------------------------------------------------------
    async def nemesis(self, until: float) -> None:
        c, rng, net = self.c, self.rng, self.c.network
        await asyncio.sleep(STORM_FROM)
        while self.loop.time() < until:
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            c.reap()
            r = rng.random()
            names = list(c.names)
            if r < 0.12:
                rng.shuffle(names)
                k = rng.randint(1, len(names) - 1)
                net.partition(names[:k], names[k:])
                self.trace.add("nemesis partition", names[:k], names[k:])
            elif r < 0.2:
                a, b = rng.sample(names, 2)
                net.cut.add((a, b))
                self.trace.add("nemesis cut", a, b)
            elif r < 0.28:
                lead = c.leader()
                if lead is not None:
                    net.partition([lead.name], [n for n in names if n != lead.name])
                    self.trace.add("nemesis isolate", lead.name)
            elif r < 0.4:
                net.heal()
                self.trace.add("nemesis heal")
            elif r < 0.48:
                net.drop, net.duplicate, net.reorder = rng.uniform(0, 0.2), rng.uniform(0, 0.1), rng.uniform(0, 0.3)
                net.delay = (0.0005, rng.choice([0.003, 0.02, 0.1]))
                self.trace.add("nemesis rates", net.drop, net.duplicate, net.reorder, net.delay)
            elif r < 0.63:
                up = [n for n in names if c.zeros[n] is not None]
                if len(up) > 1:
                    victim = rng.choice(up)
                    c.crash(victim)
                    self.loop.call_later(rng.uniform(0.3, 4.0), self._restart, victim)
            elif r < 0.73:
                lead = c.leader()
                if lead is not None:
                    self.trace.add("nemesis transfer", lead.name)
                    c.run_in(lead, _transfer(lead))
            else:
                # SIGSTOP, mostly of the leader: the others elect a successor while it
                # sleeps, and it wakes up still believing it leads, with requests waiting.
                # Half of them on a healed network, so that the others can elect.
                lead = c.leader()
                victim = lead.name if lead is not None and r < 0.9 else rng.choice(names)
                if rng.random() < 0.5:
                    net.heal()
                c.pause(victim)
                self.trace.add("nemesis pause", victim)
                self.loop.call_later(rng.uniform(0.5, 5.0), c.resume, victim)

    async def changes(self, until: float) -> None:
        """A second nemesis, beside the first (which keeps its pace): every 1-6 s a
        membership change or a clock skew, with a random stream of its own."""
        rng = self.changes_rng
        await asyncio.sleep(STORM_FROM)
        while True:
            await asyncio.sleep(rng.uniform(1.0, 6.0))
            if self.loop.time() >= until:
                return
            self._change(rng)

    def _change(self, rng: random.Random) -> None:
        """Membership changes through the real paths (JoinCluster, the leader's
        remove_zero), between 3 and 5 members; or skew one zero's clock rate."""
        c = self.c
        c.reap()
        lead = c.leader()
        if rng.random() < 0.4:
            name = rng.choice(c.names)
            c.skew(name, rng.uniform(0.5, 2.0) if rng.random() < 0.3 else rng.uniform(0.9, 1.1))
        elif lead is None:
            return
        elif len(c.names) < 5 and (len(c.names) <= 3 or rng.random() < 0.5):
            name = c.new_name()
            self.trace.add("nemesis add", name)
            c.boot(name, peer=lead.name)
        else:
            victim = rng.choice(c.names)
            rid = c.raft_id(victim)
            if rid:
                self.trace.add("nemesis remove", victim, rid)
                c.run_in(lead, _remove(self, lead, rid))

    def _restart(self, name: str) -> None:
        if self.c.zeros[name] is None and name in self.c.names and self.loop.time() < self.seconds - CALM:
            self.c.boot(name)

    # -- the run -------------------------------------------------------------------------------
    async def main(self) -> list[str]:
        c = self.c
        for name in c.names:
            c.boot(name)
        calm_at = self.seconds - CALM
        workers = [self.loop.create_task(self.client(f"dn{i}", 1 + i)) for i in range(3)]
        changes = self.loop.create_task(self.changes(calm_at))
        await self.nemesis(calm_at)
        await changes
        await asyncio.sleep(max(0.0, calm_at - self.loop.time()))
        c.network.heal()
        c.reap()
        for name in c.names:
            c.resume(name)
        for name in c.down():
            c.boot(name)
        self.trace.add("calm")
        final: Op | None = None
        while self.loop.time() < self.seconds - 1.0:
            final = await self.call("final", "ts", {"count": 1}, lambda z: _ids(z, zero_pb2.TIMESTAMP, 1))
            if final.type == OK:
                break
            await asyncio.sleep(0.2)
        for w in workers:
            w.cancel()
        out = list(c.errors)
        if final is None or final.type != OK:
            out.append(f"liveness: no timestamp was handed out within {CALM:g}s of healing")
            return out
        lead = c.leader()
        assert lead is not None
        state = lead.node.state  # everything acknowledged is applied here (the final ts's ReadIndex)
        owners = {}
        for t in TABLETS:
            got = state.tablet(t)
            if got is not None:
                owners[t] = got.group_id
        members = {mid: (gid, m.addr) for gid, g in state.groups.items() for mid, m in g.members.items()}
        ops = [o for o in self.ops if o.complete]
        out += (unique_ids(ops) + timestamps_realtime(ops) + claims(ops, owners) + membership(ops, members)
                + decisions(ops) + ceilings(ops, state.max_uid, state.max_txn_ts))
        return out


def run_schedule(seed: int, seconds: float = 30.0, zeros: int = 3, bugs: frozenset[str] = frozenset()) -> Result:
    """Run one schedule on a fresh SimLoop; the result names every violation. `bugs`
    plants known bugs (cluster.PLANTABLE) to show the checks catch them."""
    rng = random.Random(seed ^ 0x5EED)
    # A third of the schedules run on slow disks (fsync 2-30 ms): windows that last one
    # commit (a first leader's cluster id before its own registration) stay open longer.
    slow = rng.random() < 0.35
    loop = SimLoop(random.Random(rng.getrandbits(64)), disk_latency=(0.002, 0.03) if slow else (0.0005, 0.004))
    # Half of the schedules turn BUGGIFY on (zero/buggify.py): short timeouts, tiny lease
    # blocks and Raft messages, early snapshots that compact the whole log.
    bug_rng = random.Random(rng.getrandbits(64))
    buggified = rng.random() < 0.5
    data_root = tempfile.mkdtemp(prefix=f"zero-sim-{seed}-", dir="/dev/shm" if _shm() else None)
    run = _Run(seed, seconds, loop, data_root, zeros, bugs)
    res = Result(seed=seed, seconds=seconds)
    errors: list[str] = []
    loop.set_exception_handler(lambda _l, ctx: errors.append(f"unhandled: {ctx.get('message')} "
                                                             f"{ctx.get('exception')!r}"))
    try:
        if buggified:
            buggify.enable(bug_rng)  # disabled in `finally`: other tests in this process run without
        res.violations = loop.run_until_complete(run.main())
    except (Deadlock, AssertionError, Exception) as e:  # a crash of the harness or of zero is a violation too
        res.violations = [f"schedule raised {type(e).__name__}: {e}"]
    finally:
        res.buggified = sorted(site for site, on in buggify.sites().items() if on)
        buggify.disable()
        run.c.shutdown()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        shutil.rmtree(data_root, ignore_errors=True)
    res.violations += [e for e in errors if "was destroyed but it is pending" not in e]
    res.digest, res.events, res.tail = run.trace.digest, run.trace.events, run.trace.format_tail()
    c = run.c
    res.faults = {"crashes": c.crashes, "pauses": c.pauses, "added": len(c.zeros) - zeros, "retired": len(c.retired),
                  "skews": c.skews, "snapshots sent": c.network.snapshots}
    res.ops = len(run.ops)
    res.ok_ops = sum(o.type == OK for o in run.ops)
    return res


async def wait_for_answer(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait up to `timeout` for a call's task (a task of the zero called). A caller that
    stops waiting — its deadline passed, or it was cancelled itself (the clients are
    cancelled when a schedule ends, maybe in the instant they made a call) — abandons
    the task: nobody else would ever retrieve its outcome."""
    loop = task.get_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(timeout, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    except asyncio.CancelledError:
        abandon(task)
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if not task.done():
        abandon(task)


def abandon(task: asyncio.Task[Any]) -> None:
    """Cancel a call nobody waits for and retrieve its outcome when it ends (it may end
    with an answer or an error anyway: it may have finished in the same instant, or
    run its first step before the cancellation reaches it). A ZeroError is an answer
    nobody wants any more; any other exception is a bug in zero and goes to the loop's
    exception handler, which makes it a violation."""
    task.cancel()
    task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    e = task.exception()
    if e is not None and not isinstance(e, ZeroError):
        task.get_loop().call_exception_handler({"message": "an abandoned call failed", "exception": e,
                                                "future": task})


def _shm() -> bool:
    import os
    return os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)


async def _connect(z: SimZero, name: str, group: int) -> dict[str, object]:
    raw = await z.service.Connect(zero_pb2.ConnectRequest(addr=f"{name}:7080", group_id=group), None)  # type: ignore[arg-type]
    got = zero_pb2.ConnectResponse.FromString(raw)  # the bytes a data node would receive
    return {"id": got.member.id, "group": got.member.group_id}


async def _ids(z: SimZero, kind: int, n: int) -> dict[str, object]:
    got = await z.leases.assign(kind, n)  # type: ignore[arg-type]
    return {"start": got.start_id, "end": got.end_id}


async def _claim(z: SimZero, tablet: str, group: int) -> dict[str, object]:
    got = await z.service.ShouldServe(zero_pb2.Tablet(predicate=tablet, group_id=group), None)  # type: ignore[arg-type]
    return {"group": got.group_id}


async def _commit(z: SimZero, start: int, keys: list[int]) -> dict[str, object]:
    await z.oracle.wait_ready(1.0)
    (got,) = await z.oracle.commit([zero_pb2.CommitRequest(start_ts=start, conflict_keys=keys)])
    if got.code:
        raise UnavailableError(f"refused ({got.code}): {got.message}")
    return {"commit_ts": got.commit_ts, "aborted": got.aborted}


async def _remove(run: _Run, z: SimZero, rid: int) -> None:
    try:
        await z.node.remove_zero(rid, timeout=5.0)
        run.trace.add("removed", rid)
    except ZeroError as e:
        run.trace.add("remove refused", rid, type(e).__name__, str(e)[:80])


async def _transfer(z: SimZero) -> None:
    try:
        await z.node.transfer_leadership(0, timeout=2.0)
    except ZeroError:
        pass
