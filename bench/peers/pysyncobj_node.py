"""One PySyncObj 0.3.17 node (run by bench/peers/pysyncobj_cluster.py in its private venv, never
imported by zero): `python pysyncobj_node.py SELF_ADDR PARTNER_ADDR...` on 127.0.0.1.

A `SyncObj` holding a dict with one `@replicated` method, `set(key, value)`; PySyncObj's
default config (in-memory journal: nothing is fsynced). Commands on stdin, one JSON reply
per line on stdout:
  status                  -> {"self": addr, "leader": addr or null, "ready": bool}
  bench CONCURRENCY SECS WARMUP -> {"calls", "rate", "p50_ms", "p99_ms", "errors"}: CONCURRENCY
                             threads, each a closed loop of sync `set(new key, 64 bytes)`
  quit
"""

import json
import statistics
import sys
import threading
import time

from pysyncobj import SyncObj, SyncObjConf, replicated

PAYLOAD = 64


class KV(SyncObj):
    def __init__(self, me, partners):
        super().__init__(me, partners, SyncObjConf(dynamicMembershipChange=False))
        self._data = {}

    @replicated
    def set(self, key, value):
        self._data[key] = value


def bench(kv, concurrency, seconds, warmup):
    lat, errors = [], []
    start = time.perf_counter()
    t_measure, t_end = start + warmup, start + warmup + seconds
    tag = f"p{time.time_ns() % 10**9}"

    def worker(i):
        seq = 0
        while True:
            seq += 1
            key = f"{tag}-{i}-{seq}"
            value = (key + "=").ljust(PAYLOAD, "x")
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            try:
                kv.set(key, value, sync=True, timeout=10)
            except Exception as e:  # SyncObjException on a lost or failed command
                errors.append(repr(e))
                time.sleep(0.01)
                continue
            if t0 >= t_measure:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0] if lat else 0.0] * 99
    return {"calls": len(lat), "seconds": seconds, "rate": len(lat) / seconds,
            "p50_ms": statistics.median(lat) * 1e3 if lat else 0.0, "p99_ms": q[98] * 1e3,
            "errors": len(errors), "first_error": errors[0] if errors else ""}


def main():
    me, partners = sys.argv[1], sys.argv[2:]
    kv = KV(me, partners)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "status":
            leader = kv._getLeader()
            reply = {"self": me, "leader": str(leader) if leader else None, "ready": kv.isReady()}
        elif cmd[0] == "bench":
            reply = bench(kv, int(cmd[1]), float(cmd[2]), float(cmd[3]))
        else:
            break
        print(json.dumps(reply), flush=True)
    kv.destroy()


if __name__ == "__main__":
    main()
