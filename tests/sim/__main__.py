"""python -m tests.sim --seeds N [--first-seed S] [--seconds T] [--zeros Z] [-v]

Runs N schedules (seeds S .. S+N-1) and ends with one line
`schedules: N, violations: V, simulated seconds: T, wall seconds: W`; exit 1 on any
violation, after printing each failing seed's violations and replay command (-v: also
the last events of its trace, and the digest of every schedule)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .cluster import PLANTABLE
from .schedule import replay_command, run_schedule


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per schedule")
    p.add_argument("--zeros", type=int, default=3)
    p.add_argument("--plant", action="append", default=[], choices=PLANTABLE,
                   help="plant a known bug (the run should then find violations)")
    p.add_argument("--progress", type=int, default=0, metavar="K",
                   help="a soak's running count every K schedules (it can be stopped at any time)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    # A crashed zero's tasks are abandoned by design; asyncio would report each one.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    bugs = frozenset(a.plant)
    began = time.perf_counter()
    bad: list[int] = []
    simulated = 0.0
    for n, seed in enumerate(range(a.first_seed, a.first_seed + a.seeds), 1):
        r = run_schedule(seed, a.seconds, a.zeros, bugs)
        simulated += r.seconds
        if a.progress and n % a.progress == 0:
            print(f"progress: {n} schedules (to seed {seed}), violations: {len(bad) + bool(r.violations)}, "
                  f"wall seconds: {time.perf_counter() - began:.0f}, cpu seconds: {time.process_time():.0f}",
                  flush=True)
        if a.verbose:
            print(f"seed {seed}: digest {r.digest[:16]}, events {r.events}, ops {r.ops} ({r.ok_ops} ok), "
                  f"violations {len(r.violations)}, buggify {','.join(r.buggified) or '-'}, "
                  f"faults {' '.join(f'{k}={v}' for k, v in r.faults.items() if v) or '-'}", flush=True)
        if r.violations:
            bad.append(seed)
            print(f"seed {seed} FAILED:", file=sys.stderr)
            for v in r.violations[:20]:
                print(f"  {v}", file=sys.stderr)
            if a.verbose:
                print(r.tail, file=sys.stderr)
            print(f"  replay: {replay_command(seed, a.seconds, bugs)}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - began
    print(f"schedules: {a.seeds}, violations: {len(bad)}, simulated seconds: {simulated:.0f}, "
          f"wall seconds: {wall:.1f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
