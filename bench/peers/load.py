"""The gRPC load client shared by zero and etcd, run as its own process so its Python does
not share an interpreter with the orchestrator:

    python -m bench.peers.load --addr HOST:PORT --op zero-claim|etcd-put|health
                               --concurrency N --seconds S [--warmup W]

`--concurrency` asyncio tasks share one channel, each sending one call at a time
(a closed loop). The requests are raw bytes (no generated stubs, so etcd needs no Python
package): an etcd `KV/Put` is hand-encoded (key = field 1, value = field 2), a zero
`ShouldServe` claim of a new tablet is a `zero.v1.Tablet` (predicate = field 1,
group_id = field 2), and the no-op is `grpc.health.v1.Health/Check` with an empty request.
Every write carries a distinct key and the same 64-byte payload (the etcd value; the
tablet name). Prints one JSON line: calls, seconds, p50/p99 ms, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import grpc

PAYLOAD = 64
METHODS = {
    "zero-claim": "/zero.v1.Zero/ShouldServe",
    "etcd-put": "/etcdserverpb.KV/Put",
    "health": "/grpc.health.v1.Health/Check",
}


def _bytes_field(num: int, data: bytes) -> bytes:
    n, out = len(data), bytearray([num << 3 | 2])
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


def request(op: str, seq: int, tag: str) -> bytes:
    """The seq-th request of this client: a new key each time, a 64-byte payload."""
    key = f"{tag}-{seq}".encode()
    if op == "etcd-put":
        return _bytes_field(1, key) + _bytes_field(2, (key + b"=").ljust(PAYLOAD, b"x"))
    if op == "zero-claim":  # the 64-byte tablet name carries the key; group_id 1 (field 2, varint)
        return _bytes_field(1, (key + b"=").ljust(PAYLOAD, b"x")) + b"\x10\x01"
    return b""


async def run(addr: str, op: str, concurrency: int, seconds: float, warmup: float) -> dict[str, object]:
    tag = f"b{os.getpid()}x{time.time_ns() % 10**9}"
    lat: list[float] = []
    errors: list[str] = []
    seq = 0
    async with grpc.aio.insecure_channel(addr) as ch:
        call = ch.unary_unary(METHODS[op])  # bytes in, bytes out
        await asyncio.wait_for(ch.channel_ready(), 10)
        start = time.perf_counter()
        t_measure, t_end = start + warmup, start + warmup + seconds

        async def worker() -> None:
            nonlocal seq
            while True:
                seq += 1
                req = request(op, seq, tag)
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    await call(req, timeout=10)
                except grpc.aio.AioRpcError as e:
                    errors.append(f"{e.code().name}: {e.details()}")
                    await asyncio.sleep(0.01)
                    continue
                if t0 >= t_measure:
                    lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0] if lat else 0.0] * 99
    return {"calls": len(lat), "seconds": seconds, "rate": len(lat) / seconds,
            "p50_ms": statistics.median(lat) * 1e3 if lat else 0.0, "p99_ms": q[98] * 1e3,
            "errors": len(errors), "first_error": errors[0] if errors else ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--op", choices=sorted(METHODS), required=True)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ns = ap.parse_args()
    print(json.dumps(asyncio.run(run(ns.addr, ns.op, ns.concurrency, ns.seconds, ns.warmup))), flush=True)


if __name__ == "__main__":
    main()
