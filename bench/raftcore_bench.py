"""raftcore in-process throughput: 3 RawNodes on MemoryStorage, messages delivered in
memory, 64-byte proposals in batches of 256, each node persisting and applying every
Ready as the contract says. Prints entries/s committed and applied on all three nodes.

    python bench/raftcore_bench.py [--seconds 3] [--runs 5] [--batch 256] [--profile]

Goal (issue 2): at least 50,000 entries/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from raftcore import Config, MemoryStorage, RawNode, StateType, raftpb

GOAL = 50_000


class Cluster:
    def __init__(self, n: int = 3, seed: int = 1) -> None:
        ids = list(range(1, n + 1))
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied = {i: 0 for i in ids}
        for i in ids:
            s = MemoryStorage()
            rn = RawNode(Config(id=i, storage=s, rng=random.Random(seed * 10 + i)))
            rn.bootstrap(ids)
            self.nodes[i], self.storages[i] = rn, s
        self.pump()
        self.nodes[1].campaign()
        self.pump()
        assert self.nodes[1].status().raft_state == StateType.LEADER

    def pump(self) -> None:
        """Process Readys and deliver messages until nothing is left."""
        queue: list[raftpb.Message] = []
        busy = True
        while busy:
            busy = False
            for i, rn in self.nodes.items():
                while rn.has_ready():
                    busy = True
                    rd = rn.ready()
                    s = self.storages[i]
                    if rd.snapshot is not None:
                        s.apply_snapshot(rd.snapshot)
                    if rd.entries:
                        s.append(rd.entries)
                    if rd.hard_state is not None:
                        s.set_hard_state(rd.hard_state)
                    queue.extend(rd.messages)
                    n = 0
                    for e in rd.committed_entries:
                        if e.type == raftpb.EntryConfChange:
                            rn.apply_conf_change(raftpb.ConfChange.FromString(e.data))
                        elif e.data:
                            n += 1
                    self.applied[i] += n
                    rn.advance(rd)
            if queue:
                busy = True
                msgs, queue = queue, []
                for m in msgs:
                    self.nodes[m.to].step(m)


def run_once(seconds: float, batch: int, payload: bytes) -> float:
    c = Cluster()
    leader = c.nodes[1]
    datas = [payload] * batch
    proposed = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        leader.propose_batch(datas)
        proposed += batch
        c.pump()
    dt = time.perf_counter() - t0
    done = min(c.applied.values())
    assert done == proposed, (done, proposed)
    return done / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--profile", action="store_true", help="profile one run with pyinstrument")
    a = ap.parse_args()
    payload = b"x" * 64
    if a.profile:
        from pyinstrument import Profiler
        p = Profiler()
        p.start()
        run_once(a.seconds, a.batch, payload)
        p.stop()
        print(p.output_text(unicode=True, color=False))
        return
    rates = [run_once(a.seconds, a.batch, payload) for _ in range(a.runs)]
    med = statistics.median(rates)
    print("raftcore in-process: 3 RawNodes, MemoryStorage, 64 B proposals, batches of", a.batch)
    print(f"{'run':>5} {'entries/s':>12}")
    for i, r in enumerate(rates, 1):
        print(f"{i:>5} {r:>12,.0f}")
    print(f"{'median':>5} {med:>12,.0f}   min {min(rates):,.0f}  max {max(rates):,.0f}")
    print(f"goal >= {GOAL:,} entries/s: {'PASS' if med >= GOAL else 'FAIL'} (ratio {med / GOAL:.2f}x)")


if __name__ == "__main__":
    main()
