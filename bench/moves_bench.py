"""Tablet move throughput and time to rebalance, with real `zero run` and `zero datanode`
processes on loopback (issue 7).

    python bench/moves_bench.py [--tablet-mb 32] [--moves 4] [--rebalance-mb 24] [--data-dir]

1. Move throughput: one tablet of --tablet-mb MB (64 KiB values) is moved back and forth
   between two groups with ZeroAdmin.MoveTablet; MB/s = tablet size / wall time of the
   admin call (StartMove, fence, copy, CommitMove, drop at the source).
2. Time to rebalance: --rebalance-mb MB in 12 tablets of uneven sizes, all on group 1 of
   three groups; the rebalancer (interval 200 ms) runs until no move is planned.

`--data-dir` runs the data nodes on disk (fsync per write and per received tablet)
instead of in memory. Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zero.leader.planner import group_sizes, plan_rebalance  # noqa: E402
from zero.pb import datanode_pb2 as dn  # noqa: E402
from zero.pb import datanode_pb2_grpc as dng  # noqa: E402
from zero.pb import zero_pb2, zero_pb2_grpc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VALUE = 64 << 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    def __init__(self, tmp: str, groups: int, *, rebalance: str, data_dir: bool) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
        self.zaddr = f"127.0.0.1:{free_port()}"
        self._spawn(["run", "--data-dir", f"{tmp}/zw", "--grpc-addr", self.zaddr, "--my", self.zaddr,
                     "--http-addr", f"127.0.0.1:{free_port()}", "--rebalance-interval", rebalance], env)
        self.ch = grpc.insecure_channel(self.zaddr, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.zero = zero_pb2_grpc.ZeroStub(self.ch)
        self.admin = zero_pb2_grpc.ZeroAdminStub(self.ch)
        wait_for(self.state, 20, "zero")
        self.dn: dict[int, dng.DataNodeStub] = {}
        for g in range(1, groups + 1):
            addr = f"127.0.0.1:{free_port()}"
            extra = ["--data-dir", f"{tmp}/dn{g}"] if data_dir else []
            self._spawn(["datanode", "--zero", self.zaddr, "--addr", addr, "--group", str(g),
                         "--size-interval", "200ms", *extra], env)
            self.dn[g] = dng.DataNodeStub(grpc.insecure_channel(addr))
            wait_for(lambda: any(m.healthy for m in (self.state() or zero_pb2.MembershipState())
                                 .groups.get(g, zero_pb2.Group()).members.values()), 20, f"data node {g}")

    def _spawn(self, args: list[str], env: dict[str, str]) -> None:
        self.procs.append(subprocess.Popen([sys.executable, "-m", "zero", *args], cwd=REPO, env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def state(self) -> zero_pb2.MembershipState | None:
        try:
            return self.zero.GetState(zero_pb2.GetStateRequest(), timeout=5)
        except grpc.RpcError:
            return None

    def load(self, group: int, tablet: str, nbytes: int) -> int:
        n = max(1, nbytes // VALUE)
        for k in range(n):
            self.dn[group].Put(dn.PutRequest(tablet=tablet, key=b"k%08d" % k, value=os.urandom(VALUE)), timeout=10)
        return n * (VALUE + 9)

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def bench_throughput(tmp: str, mb: int, moves: int, data_dir: bool) -> tuple[int, list[float]]:
    c = Cluster(tmp, 2, rebalance="0", data_dir=data_dir)
    try:
        size = c.load(1, "big", mb << 20)
        rates = []
        for i in range(moves):
            dst = 2 if i % 2 == 0 else 1
            t0 = time.perf_counter()
            r = c.admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate="big", dst_group=dst), timeout=300)
            secs = time.perf_counter() - t0
            if not r.committed:
                raise SystemExit(f"move {r.move_id} was rolled back: {r.message}")
            rates.append(size / secs / 1e6)
        return size, rates
    finally:
        c.close()


def bench_rebalance(tmp: str, mb: int, data_dir: bool) -> tuple[float, int, dict[int, int], dict[int, int]]:
    c = Cluster(tmp, 3, rebalance="200ms", data_dir=data_dir)
    try:
        c.admin.SetRebalance(zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.OFF))
        weights = [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
        total = 0
        for i, w in enumerate(weights):
            total += c.load(1, f"t{i:02d}", (mb << 20) * w // sum(weights))
        wait_for(lambda: (s := c.state()) is not None and group_sizes(s).get(1, 0) >= 0.9 * total, 30, "sizes")
        before = group_sizes(c.state())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        c.admin.SetRebalance(zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.ON))

        def done() -> bool:
            st = c.state()
            busy = st is None or any(t.read_only for g in st.groups.values() for t in g.tablets.values())
            return not busy and plan_rebalance(st) is None  # type: ignore[arg-type]
        wait_for(done, 300, "a balanced load")
        secs = time.perf_counter() - t0
        st = c.state()
        assert st is not None
        moved = sum(1 for g in (2, 3) for _ in st.groups[g].tablets)
        return secs, moved, before, group_sizes(st)
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tablet-mb", type=int, default=32)
    ap.add_argument("--moves", type=int, default=4)
    ap.add_argument("--rebalance-mb", type=int, default=24)
    ap.add_argument("--data-dir", action="store_true", help="data nodes on disk instead of in memory")
    args = ap.parse_args()
    mode = "on disk (fsync)" if args.data_dir else "in memory"
    with tempfile.TemporaryDirectory() as tmp:
        size, rates = bench_throughput(f"{tmp}/a", args.tablet_mb, args.moves, args.data_dir)
        secs, moved, before, after = bench_rebalance(f"{tmp}/b", args.rebalance_mb, args.data_dir)
    print(f"zero tablet moves: one zero, reference data nodes {mode}, loopback; python {sys.version.split()[0]}")
    print(f"{'measure':<44}{'value':>14}")
    print(f"{'tablet size':<44}{size / 1e6:>11.1f} MB")
    print(f"{'move throughput, median of %d moves' % len(rates):<44}{statistics.median(rates):>9.1f} MB/s")
    print(f"{'move throughput, min .. max':<44}{min(rates):>6.1f} .. {max(rates):.1f}")
    print(f"{'rebalance: load on group 1 (12 tablets)':<44}{sum(before.values()) / 1e6:>11.1f} MB")
    print(f"{'rebalance: time until balanced (200 ms ticks)':<44}{secs:>12.2f} s")
    print(f"{'rebalance: tablets moved':<44}{moved:>14}")
    print(f"{'rebalance: group sizes after, MB':<44}{'  '.join(f'{after[g] / 1e6:.1f}' for g in sorted(after)):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
