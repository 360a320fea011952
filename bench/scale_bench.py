"""One zero at the size of issue 23: N data nodes, M tablets (its goals 1 and 3).

    python bench/scale_bench.py                                   # CI size: 1,000 members, 100,000 tablets
    python bench/scale_bench.py --members 10000 --tablets 1000000  # the issue's size

Starts one `zero run` (fsync on, as in production) in a temp data dir on loopback, then
from one synchronous caller (a plain grpc stub, one call at a time):
  - connects N members one by one (Connect, new addresses, the zero's --replicas); the
    time of a call is to its answer's bytes, the caller's parse of the answer (it holds
    the whole state) is timed apart; the total includes both;
  - claims M tablets through `Tablets`, --batch per request, spread over the groups;
  - reads the full state with GetState (the first read serializes the state, repeats
    share those bytes) and with StreamMembership from version 0 up to the last chunk;
  - reads the zero's resident memory (VmRSS and its peak, VmHWM, /proc/<pid>/status).
Each figure is printed with its goal from the issue and PASS or FAIL. Not a test.
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

OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 64 << 20)]
FULL_MEMBERS = 10_000  # the size; below it the CI goals apply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024  # kB
    return out["VmRSS"], out["VmHWM"]


def start_zero(tmp: str, replicas: int) -> tuple[subprocess.Popen[bytes], str]:
    gport, hport = free_port(), free_port()
    addr = f"127.0.0.1:{gport}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zero", "run", "--data-dir", os.path.join(tmp, "zw"), "--grpc-addr", addr,
         "--http-addr", f"127.0.0.1:{hport}", "--my", addr, "--replicas", str(replicas), "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{hport}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, addr
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("zero did not become healthy")
        time.sleep(0.05)


def stream_full_state(stub: zero_pb2_grpc.ZeroStub) -> tuple[float, int]:
    """Seconds from the call to the full state's last chunk, and the chunks' bytes."""
    t0 = time.perf_counter()
    size = 0
    calls = stub.StreamMembership(zero_pb2.StreamMembershipRequest(), timeout=120)
    for update in calls:
        size += update.ByteSize()
        if update.full and update.last_chunk:
            break
    took = time.perf_counter() - t0
    calls.cancel()
    return took, size


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1_000)
    ap.add_argument("--tablets", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000, help="tablets per Tablets request (the zero's maximum)")
    ap.add_argument("--replicas", type=int, default=1, help="the zero's --replicas (1: one group per member)")
    ap.add_argument("--state-reads", type=int, default=5)
    args = ap.parse_args()
    full = args.members >= FULL_MEMBERS
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_zero(tmp, args.replicas)
        try:
            with grpc.insecure_channel(addr, options=OPTIONS) as ch:
                stub = zero_pb2_grpc.ZeroStub(ch)
                # Connect, one by one, as N data nodes starting in turn would.
                # The call answers bytes, parsed after the clock of the call stops: `per` is
                # the zero's answer on the wire, `parse` the caller's share.
                connect: grpc.UnaryUnaryMultiCallable[zero_pb2.ConnectRequest, bytes] = ch.unary_unary(
                    "/zero.v1.Zero/Connect", request_serializer=zero_pb2.ConnectRequest.SerializeToString)
                per: list[float] = []
                parse: list[float] = []
                groups: list[int] = []
                t_all = time.perf_counter()
                for i in range(args.members):
                    t0 = time.perf_counter()
                    raw = connect(zero_pb2.ConnectRequest(addr=f"dn{i}.scale:7080"), timeout=30)
                    t1 = time.perf_counter()
                    groups.append(zero_pb2.ConnectResponse.FromString(raw).member.group_id)
                    per.append(t1 - t0)
                    parse.append(time.perf_counter() - t1)
                connect_s = time.perf_counter() - t_all
                last = per[-1000:]
                last_p50 = statistics.median(last)
                gids = sorted(set(groups))
                # Bulk claims, spread over the groups round robin.
                t0 = time.perf_counter()
                for start in range(0, args.tablets, args.batch):
                    names = range(start, min(start + args.batch, args.tablets))
                    req = zero_pb2.TabletsRequest(tablets=[
                        zero_pb2.Tablet(predicate=f"p{n}", group_id=gids[n % len(gids)]) for n in names])
                    stub.Tablets(req, timeout=120)
                claims_s = time.perf_counter() - t0
                # The full state: GetState (first read serializes, repeats share the bytes).
                reads: list[float] = []
                state_bytes = 0
                for _ in range(args.state_reads):
                    t0 = time.perf_counter()
                    state = stub.GetState(zero_pb2.GetStateRequest(), timeout=120)
                    reads.append(time.perf_counter() - t0)
                    state_bytes = state.ByteSize()
                n_tablets = sum(len(g.tablets) for g in state.groups.values())
                streams = [stream_full_state(stub) for _ in range(3)]
            rss, hwm = memory_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert n_tablets == args.tablets, f"the state has {n_tablets} tablets, not {args.tablets}"
    claims_per_s = args.tablets / claims_s
    state_ms = statistics.median(reads) * 1e3
    stream_ms = statistics.median(s for s, _ in streams) * 1e3
    print(f"one zero (fsync, --replicas {args.replicas}), loopback, one synchronous caller; "
          f"{args.members:,} members in {len(gids):,} groups, {args.tablets:,} tablets; "
          f"python {sys.version.split()[0]}")
    print(f"{'figure':<46}{'value':>14}  {'goal':<15}{'verdict'}")

    def row(name: str, value: str, goal: tuple[str, bool] | None = None) -> None:
        text, ok = goal if goal is not None else ("", None)
        print(f"{name:<46}{value:>14}  {text:<15}{'' if ok is None else verdict(ok)}")

    # The goals at its size; CI's own at a tenth ((3): goal 3 of the issue).
    row(f"Connect of {args.members:,}, one by one", f"{connect_s:.1f} s",
        ("<= 30 s", connect_s <= 30) if full else None)
    row(f"Connect, p50 of the last {len(last):,}", f"{last_p50 * 1e3:.2f} ms", ("<= 5 ms", last_p50 <= 5e-3))
    row(f"Connect, caller's parse, p50 of the last {len(last):,}", f"{statistics.median(parse[-1000:]) * 1e3:.2f} ms")
    row(f"Connect, p99 of the last {len(last):,}", f"{sorted(last)[int(len(last) * 0.99) - 1] * 1e3:.2f} ms")
    row(f"Connect, p50 of the first {min(1000, len(per)):,}", f"{statistics.median(per[:1000]) * 1e3:.2f} ms")
    row(f"bulk claims ({args.batch:,} a request)", f"{claims_per_s:,.0f}/s",
        ("(3) >= 100k/s", claims_per_s >= 100_000) if full else None)
    row("GetState, first read (serializes)", f"{reads[0] * 1e3:.0f} ms")
    row(f"GetState, median of {len(reads)}", f"{state_ms:.0f} ms",
        ("(3) <= 300 ms", state_ms <= 300) if full else ("<= 60 ms", state_ms <= 60))
    row("GetState size", f"{state_bytes / 1e6:.1f} MB")
    row("StreamMembership full state, last chunk", f"{stream_ms:.0f} ms",
        ("(3) <= 500 ms", stream_ms <= 500) if full else None)
    row("zero RSS at the end (peak)", f"{rss:.0f} ({hwm:.0f}) MB",
        ("(3) <= 400 MB", rss <= 400) if full else ("<= 150 MB", rss <= 150))
    return 0


if __name__ == "__main__":
    sys.exit(main())
