"""Failover benchmark (not a test): kill -9 the leader of 3 `zero run` processes, with
DEFAULT timing flags (tick 100 ms, 5 election ticks), while a client writes continuously.

    python bench/failover_bench.py [--trials 10] [--seconds 60] [--writers 2] [--dir DIR]

1. failover — each trial: the client (zero.client.ZeroClient given all three addresses,
   `--writers` concurrent loops of Connect with a new address each, a replicated write;
   or `--op timestamp`)
   writes; the leader is killed with SIGKILL; measured: the time from the kill to the
   first write that was *sent after the kill* and acknowledged. The killed zero is
   restarted (same data dir) and caught up before the next trial.
   Goals: median <= 250 ms, max <= 500 ms. No peer figure is printed here: `python -m
   bench` (bench/run.py) measures etcd's failover beside zero's in one run.
2. steady — the same client load for --seconds without faults; counted: leader losses,
   i.e. the increase of zero_leader_changes_total (the counter on each zero's /metrics:
   +1 whenever the leader that zero follows changes, to none or to another) summed over
   the zeros, and term changes. Goal: 0 of both. A follower that misses heartbeats for
   an election timeout and then follows the same leader again in the same term counts
   (it served without a leader meanwhile). A 5-minute run: --seconds 300.

Exit status 1 when a goal is missed (or a zero's counter could not be read).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # support, which procs imports
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from procs import ProcCluster, ZeroProc  # noqa: E402
from support import until  # noqa: E402

from zero.client import ZeroClient  # noqa: E402

MEDIAN_GOAL, MAX_GOAL = 0.25, 0.5  # a crash is detected (zero/replica/failover.py): no timeout to wait out


class Load:
    """`writers` loops of Connect through one ZeroClient; every ack is recorded as
    (sent, acked) monotonic times."""

    def __init__(self, addrs: list[str], writers: int, tag: str, op: str = "connect") -> None:
        self.addrs = addrs
        self.op = op
        self.writers = writers
        self.tag = tag
        self.acks: list[tuple[float, float]] = []
        self.errors = 0
        self._stop = False

    async def run(self) -> None:
        async with ZeroClient(self.addrs, rpc_timeout=2.0, retry_deadline=30.0) as zc:
            await asyncio.gather(*(self._writer(zc, w) for w in range(self.writers)))

    async def _writer(self, zc: ZeroClient, w: int) -> None:
        i = 0
        while not self._stop:
            i += 1
            sent = time.monotonic()
            try:
                if self.op == "connect":
                    await zc.connect(f"{self.tag}-w{w}-{i}:7080")
                else:
                    await zc.timestamps(1)
            except Exception:  # noqa: BLE001 - counted; the loop goes on
                self.errors += 1
                continue
            self.acks.append((sent, time.monotonic()))

    def stop(self) -> None:
        self._stop = True


def metric(z: ZeroProc, name: str) -> float:
    try:
        with urllib.request.urlopen(z.http + "/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def settle(c: ProcCluster) -> ZeroProc:
    """All three serve, every zero is a voter, and the followers have caught up."""
    lead = c.wait_leader(30)
    c.wait_voters(3, 30)
    st = lead.status()
    assert st is not None
    target = st.commit
    for z in c.zeros:
        until(lambda z=z: (lambda s: s is not None and s.applied >= target)(z.status()), 30,
              message=f"{z.name} to catch up")
    return lead


async def trial(c: ProcCluster, n: int, writers: int, op: str) -> float:
    lead = settle(c)
    load = Load(c.addrs, writers, f"t{n}", op)
    task = asyncio.get_running_loop().create_task(load.run())
    await asyncio.sleep(1.0)  # writes flowing
    before = len(load.acks)
    t_kill = time.monotonic()
    os.kill(lead.pid, signal.SIGKILL)
    deadline = t_kill + 30
    while time.monotonic() < deadline:
        after = [a for s, a in load.acks if s > t_kill]
        if after:
            break
        await asyncio.sleep(0.005)
    load.stop()
    await task
    lead.wait_exit(10)
    after = [a for s, a in load.acks if s > t_kill]
    if not after:
        raise SystemExit(f"trial {n}: no write acknowledged within 30 s of the kill")
    took = min(after) - t_kill
    print(f"  trial {n:>2}: killed {lead.name} (raft id {lead.raft_id}); first ack after {took * 1e3:7.1f} ms "
          f"({before} writes before the kill)", flush=True)
    lead.start()
    lead.wait_healthy(30)
    return took


async def steady(c: ProcCluster, seconds: float, writers: int, op: str) -> bool:
    """The fault-free loaded run; True when no zero lost or changed its leader."""
    settle(c)
    terms0 = {z.name: z.health()[1].get("term") for z in c.zeros}
    changes0 = {z.name: metric(z, "zero_leader_changes_total") for z in c.zeros}
    load = Load(c.addrs, writers, "steady", op)
    task = asyncio.get_running_loop().create_task(load.run())
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    load.stop()
    await task
    elapsed = time.monotonic() - t0
    terms1 = {z.name: z.health()[1].get("term") for z in c.zeros}
    changes = {z.name: metric(z, "zero_leader_changes_total") - changes0[z.name] for z in c.zeros}
    lat = sorted(a - s for s, a in load.acks)
    p = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3) if lat else (lambda q: float("nan"))
    print(f"  {len(load.acks)} writes in {elapsed:.0f} s ({len(load.acks) / elapsed:,.0f}/s), "
          f"p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {p(1.0):.1f} ms, errors {load.errors}")
    # The verdict counts leader losses, not only elections: zero_leader_changes_total
    # also moves when a follower loses the leader for an election timeout and comes back
    # to the same leader in the same term (a failed pre-vote), and such a gap is a loss.
    elections = max(int(terms1[k]) - int(terms0[k]) for k in terms0)
    unread = sorted(k for k, v in changes.items() if math.isnan(v))  # /metrics did not answer
    losses = sum(int(v) for v in changes.values() if not math.isnan(v))
    per_zero = ", ".join(f"{k} {'unread' if math.isnan(v) else int(v)}" for k, v in sorted(changes.items()))
    print(f"  terms before {sorted(terms0.values())} after {sorted(terms1.values())}; "
          f"zero_leader_changes_total increase per zero: {per_zero}")
    ok = elections == 0 and losses == 0 and not unread
    print(f"  leader losses (zero_leader_changes_total increase, all zeros; a loss and the return "
          f"of a leader count 1 each): {losses}; elections (term changes): "
          f"{elections}   goal 0 and 0   {'OK' if ok else 'MISSED'}"
          + (f"; counter unread on {', '.join(unread)}" if unread else ""))
    return ok


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0, help="the fault-free loaded run (0: skip)")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--op", choices=("connect", "timestamp"), default="connect",
                    help="the write: Connect with a new address (a replicated change; its cost grows with "
                         "the member count) or Timestamps count=1 (a quorum round; a new leader first "
                         "commits a lease block)")
    ap.add_argument("--dir", default=None, help="parent of the data dirs (default: a temp dir in the cwd)")
    ns = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="failover-bench-", dir=ns.dir or "."))
    c = ProcCluster(root, 3, flags=())  # default --tick 100ms --election-ticks 5
    ok = True
    print(f"failover bench: 3 zero run processes, default timing (tick 100 ms x 5), data in {root}")
    try:
        c.start(60)
        if ns.trials:
            print(f"kill -9 of the leader, {ns.trials} trials, {ns.writers} writers ({ns.op} via ZeroClient):")
            times = [await trial(c, i + 1, ns.writers, ns.op) for i in range(ns.trials)]
            med, worst = statistics.median(times), max(times)
            print(f"  first acknowledged write after the kill: median {med * 1e3:.0f} ms "
                  f"(goal <= {MEDIAN_GOAL * 1e3:.0f}) {'OK' if med <= MEDIAN_GOAL else 'MISSED'}, "
                  f"max {worst * 1e3:.0f} ms (goal <= {MAX_GOAL * 1e3:.0f}) {'OK' if worst <= MAX_GOAL else 'MISSED'}")
            ok = med <= MEDIAN_GOAL and worst <= MAX_GOAL
        if ns.seconds > 0:
            print(f"steady load without faults for {ns.seconds:.0f} s ({ns.op}):")
            ok = await steady(c, ns.seconds, ns.writers, ns.op) and ok
    finally:
        for z in c.zeros:
            if z.running:
                try:
                    z.stop(15)
                except AssertionError:
                    pass
        c.cleanup()
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
