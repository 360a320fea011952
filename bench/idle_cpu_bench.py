"""Idle CPU of a 3-zero cluster (not a test): three `zero run` processes with default
flags (tick 100 ms, 5 election ticks), no clients; each process's CPU time (utime +
stime from /proc/<pid>/stat) over --seconds, as a share of one core.

    python bench/idle_cpu_bench.py [--seconds 10] [--warmup 3] [--dir DIR]

Goal: under 2% of a core per zero (issue 5). A zero idles at one heartbeat per tick
from the leader to each follower and back, plus its own tick and health loops.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # support, which procs imports
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from procs import ProcCluster  # noqa: E402

GOAL = 2.0  # percent of one core, per zero


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after start before measuring")
    ap.add_argument("--dir", default=None)
    ns = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="idle-cpu-bench-", dir=ns.dir or "."))
    c = ProcCluster(root, 3, flags=())
    try:
        c.start(60)
        lead = c.wait_leader()
        time.sleep(ns.warmup)
        t0 = time.monotonic()
        cpu0 = {z.name: cpu_seconds(z.pid) for z in c.zeros}
        time.sleep(ns.seconds)
        elapsed = time.monotonic() - t0
        cpu1 = {z.name: cpu_seconds(z.pid) for z in c.zeros}
        print(f"idle 3-zero cluster, default flags, {elapsed:.1f} s (CPU from /proc/<pid>/stat, "
              f"{os.sysconf('SC_CLK_TCK')} ticks/s):")
        worst = 0.0
        for z in c.zeros:
            pct = (cpu1[z.name] - cpu0[z.name]) / elapsed * 100
            worst = max(worst, pct)
            role = "leader" if z is lead else "follower"
            print(f"  {z.name} (raft id {z.raft_id}, {role:<8}) {pct:5.2f}% of a core")
        print(f"  worst {worst:.2f}%   goal < {GOAL:.0f}%   {'OK' if worst < GOAL else 'MISSED'}")
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


if __name__ == "__main__":
    main()
