"""Lease latency and idle CPU of a real `zero run` on loopback (issue 4's goals).

    python bench/leases_bench.py [--calls 2000] [--idle-seconds 10]

Starts one zero in a temp data dir on free ports, then measures from a lone caller
(a synchronous grpc stub, one call at a time):
  - `Timestamps` count=1 — goal: median <= 2 ms
  - `AssignIds` UID count=1 — goal: median <= 1 ms
and the zero's CPU while idle (utime+stime from /proc/<pid>/stat) — goal: < 1% of a core.
Prints a table; not a test.
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
import urllib.request
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zero.pb import zero_pb2, zero_pb2_grpc  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def measure(call, n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm up: connection, lease blocks, code paths
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def row(name: str, xs: list[float], goal_ms: float) -> str:
    xs = sorted(xs)
    med = statistics.median(xs) * 1e3
    p99 = xs[int(len(xs) * 0.99) - 1] * 1e3
    verdict = "ok" if med <= goal_ms else "MISSED"
    return f"{name:<28}{len(xs):>7}{med:>10.3f}{p99:>10.3f}{goal_ms:>9.1f}  {verdict}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gport, hport = free_port(), free_port()
        grpc_addr = f"127.0.0.1:{gport}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "zero", "run", "--data-dir", os.path.join(tmp, "zw"), "--grpc-addr", grpc_addr,
             "--http-addr", f"127.0.0.1:{hport}", "--my", grpc_addr, "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{hport}/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("zero did not become healthy", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            with grpc.insecure_channel(grpc_addr) as ch:
                stub = zero_pb2_grpc.ZeroStub(ch)
                ts_req = zero_pb2.TimestampsRequest(count=1)
                uid_req = zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1)
                ts = measure(lambda: stub.Timestamps(ts_req, timeout=5), args.calls)
                uid = measure(lambda: stub.AssignIds(uid_req, timeout=5), args.calls)
            time.sleep(1.0)  # let the prefetch and the client's connection settle
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"single zero, loopback, lone synchronous caller; python {sys.version.split()[0]}")
    print(f"{'measure':<28}{'calls':>7}{'median ms':>10}{'p99 ms':>10}{'goal ms':>9}")
    print(row("Timestamps count=1", ts, 2.0))
    print(row("AssignIds UID count=1", uid, 1.0))
    print(f"{'idle CPU over %.0f s' % args.idle_seconds:<28}{'':>7}{idle:>9.2f}%{'':>10}{'< 1%':>9}  "
          f"{'ok' if idle < 1.0 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
