"""The transaction oracle's benchmark (not a test), issue 18's goals, etcd's Txn beside it.

    python bench/oracle_bench.py [--runs 5] [--seconds 4] [--warmup 1] [--commits 300]
                                 [--memory-commits 1000000] [--no-etcd] [--dir DIR]

Three `zero run` processes with default flags (fsync on; tests/cluster/procs.py, as
bench/run.py starts them) and, when etcd is installed, three etcd members
(bench/peers/etcd.py), all on 127.0.0.1 and up at once. One data node is connected (group
1) and one tablet claimed; every transaction writes 2 random 63-bit conflict keys (conflicts
are rare) and names that tablet. Each run measures every system in turn, each from a
client process of its own (this script with --client), so background load falls on all:

1. one commit, lone caller: the p50 of `ZeroClient.commit` (its start_ts from
   `ZeroClient.timestamp()` just before, not timed) against the p50 of one replicated write
   by the same client, interleaved with the commits: a `ShouldServe` claim of a new tablet
   (one proposal, fdatasynced on a quorum before the answer: the write of `python -m
   bench`). Goals: p50 <= write p50 + 0.5 ms, and <= 2.5 ms. Also shown: the unary
   `CommitOrAbort` (no CommitStream), etcd's Txn from one caller, and what the leader's
   /metrics say of the window.
2. 64 concurrent transactions in one client process, each task looping
   `ts = await zc.timestamp(); await zc.commit(ts, [k1, k2], [(tablet, group)])` (the
   client merges them into CommitBatches on one CommitStream): commits/s. Goals: >= 20,000
   and >= 2x etcd's Txn rate at 64 callers in the same run. etcd's Txn: 64 callers on one
   grpcio channel (raw bytes, as bench/peers/load.py sends KV/Put), each a compare-and-put
   of 2 new keys: mod_revision <= the newest revision any answer carried so far (the
   snapshot the transaction read), then a put of an 8-byte value at both — one RPC, no
   separate start revision round, where zero's loop makes two. To see what limits zero,
   the same run also measures the 64 tasks calling only `timestamp()`, and committing with
   start timestamps taken in bulk (`ZeroClient.timestamps(100,000)`, one unary call per
   100,000 transactions) instead of one `timestamp()` each. Printed for each window: the
   leader's and the client's CPU share (utime+stime), and from the leader's /metrics its
   proposals, transactions per proposal, mean fsync, propose-to-apply, ReadIndex and
   oracle.commit times.
3. conflict-table memory on an endless workload: tests/zero/test_oracle_state.py's
   `endless_workload` (imported by path, in a process of its own), which applies
   --memory-commits commits of 2 random keys through the state machine with safe_ts
   trailing by 20,000 and decisions kept 20,000 more; RSS and snapshot size after 30% and
   at the end. Goal: flat within 10%. --memory-commits 0 skips it.

Prints a table with the median of the runs (and every run's figure); etcd's figures come
from the same runs. Exit status 1 when a goal is missed. `python -m bench` runs parts 1
and 2 (one client process per system per run) through `measure` and `rows`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # support, which procs imports
sys.path.insert(0, str(REPO / "tests" / "cluster"))

LAT_SLACK_MS, LAT_MAX_MS = 0.5, 2.5
RATE_GOAL, ETCD_RATIO = 20_000, 2.0
MEMORY_TOLERANCE = 0.10
CALLERS = 64
TABLET = "oracle-bench"
BULK = 100_000  # start timestamps per ZeroClient.timestamps call in the bulk measure
WORKLOAD = REPO / "tests" / "zero" / "test_oracle_state.py"
Results = dict[str, list[float]]  # measure -> one figure per run


def log(msg: str) -> None:
    print(msg, flush=True)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def fdatasync_ms(d: Path, n: int = 200) -> float:
    """The median fdatasync of a 4 KiB append in `d` (where the data dirs are)."""
    path, times = d / "fsync-probe", []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return p50_ms(times)


def p50_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


# -- the client processes ----------------------------------------------------------------------------
def keys(rng: random.Random) -> list[int]:
    return [rng.getrandbits(63), rng.getrandbits(63)]


async def zero_client(ns: argparse.Namespace) -> dict[str, float]:
    from zero.client import ZeroClient
    from zero.client.commits import commit_request

    rng = random.Random()
    writes = [(TABLET, ns.group)]
    out: dict[str, float] = {}
    tag = f"{os.getpid()}x{time.time_ns() % 10**9}"
    async with ZeroClient(ns.addrs.split(","), rpc_timeout=10.0) as zc:
        if ns.commits:
            before = await asyncio.to_thread(leader_sample, ns.leader_pid, ns.leader_http)
            commit, claim, unary = [], [], []
            warm = min(20, ns.commits)  # the first calls warm up channels, streams and leases
            for i in range(ns.commits + warm):
                ts = await zc.timestamp()
                t0 = time.perf_counter()
                r = await zc.commit(ts, keys(rng), writes)
                t1 = time.perf_counter()
                await zc.should_serve(f"{TABLET}-{tag}-{i}", ns.group)
                t2 = time.perf_counter()
                ts = await zc.timestamp()
                t3 = time.perf_counter()
                await zc.call("CommitOrAbort", commit_request(ts, keys(rng), writes))
                t4 = time.perf_counter()
                if r.aborted:
                    raise SystemExit(f"bench: a lone commit aborted: {r}")
                if i >= warm:
                    commit.append(t1 - t0)
                    claim.append(t2 - t1)
                    unary.append(t4 - t3)
            out |= {"commit_p50": p50_ms(commit), "claim_p50": p50_ms(claim), "unary_p50": p50_ms(unary)}
            lone = window(before, await asyncio.to_thread(leader_sample, ns.leader_pid, ns.leader_http))
            out |= {f"lone_{k}": v for k, v in lone.items()}
        for mode in ns.rates.split(",") if ns.rates else []:
            got = await zero_rate(zc, mode, writes, ns)
            out |= {f"{mode}_{k}": v for k, v in got.items()}
    return out


LEADER_METRICS = {  # name on the leader's /metrics -> short name
    "zero_txn_commits_total": "commits", 'zero_proposals_total{result="ok"}': "proposals",
    "zero_wal_fsync_seconds_sum": "fsync_s", "zero_wal_fsync_seconds_count": "fsyncs",
    "zero_proposal_apply_seconds_sum": "apply_s", "zero_proposal_apply_seconds_count": "applies",
    "zero_read_index_seconds_sum": "read_index_s", "zero_read_index_seconds_count": "read_indexes",
    "zero_ready_loop_seconds_count": "readies",
    "zero_txn_commit_seconds_sum": "decide_s", "zero_txn_commit_seconds_count": "decides"}


def leader_sample(pid: int, http: str) -> dict[str, float]:
    """The leader's CPU seconds and (given its HTTP address) the counters of LEADER_METRICS, now."""
    import urllib.request
    out = {"wall": time.perf_counter(), "client_cpu": time.process_time(), "leader_cpu": cpu_seconds(pid)}
    if not http:
        return out
    with urllib.request.urlopen(http + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name in LEADER_METRICS:
                out[LEADER_METRICS[name]] = float(value)
    return out


def window(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """What the leader did between two samples: CPU shares, proposals, and mean times in ms."""
    d = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in b}
    wall = d["wall"]

    def mean_ms(s: str, n: str) -> float:
        return d[s] / d[n] * 1e3 if d.get(n) else 0.0

    return {"client_cpu": d["client_cpu"] / wall, "leader_cpu": d["leader_cpu"] / wall,
            "proposals_per_s": d.get("proposals", 0.0) / wall,
            "txns_per_proposal": d.get("commits", 0.0) / d["proposals"] if d.get("proposals") else 0.0,
            "fsync_ms": mean_ms("fsync_s", "fsyncs"), "apply_ms": mean_ms("apply_s", "applies"),
            "read_index_ms": mean_ms("read_index_s", "read_indexes"), "readies_per_s": d.get("readies", 0.0) / wall,
            "decide_ms": mean_ms("decide_s", "decides")}


async def closed_loop(one: Callable[[], Awaitable[bool]], ns: argparse.Namespace,
                      sample: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`ns.concurrency` tasks each calling `one()` (True: it aborted) in a loop for --warmup
    + --seconds; counted: the calls that complete inside the measured window, with
    `sample()` taken (in a thread) at both of its ends."""
    done = aborted = 0
    t_measure = time.perf_counter() + ns.warmup
    t_end = t_measure + ns.seconds

    async def worker() -> None:
        nonlocal done, aborted
        while time.perf_counter() < t_end:
            lost = await one()
            if t_measure <= time.perf_counter() < t_end:
                done += 1
                aborted += lost

    async def observe() -> dict[str, float]:
        await asyncio.sleep(t_measure - time.perf_counter())
        a = await asyncio.to_thread(sample)
        await asyncio.sleep(t_end - time.perf_counter())
        return window(a, await asyncio.to_thread(sample))

    obs = asyncio.create_task(observe())
    await asyncio.gather(*(worker() for _ in range(ns.concurrency)))
    return {"rate": done / ns.seconds, "aborted": aborted, **await obs}


async def zero_rate(zc: Any, mode: str, writes: list[tuple[str, int]], ns: argparse.Namespace) -> dict[str, float]:
    """`mode`: commit (timestamp() + commit), bulk (start_ts from a block + commit), ts (timestamp() only)."""
    rng = random.Random()
    pool: list[int] = []
    refill = asyncio.Lock()

    async def start_ts() -> int:
        if mode != "bulk":
            return int(await zc.timestamp())
        while not pool:
            async with refill:
                if not pool:
                    first, last = await zc.timestamps(BULK)
                    pool.extend(range(last, first - 1, -1))
        return pool.pop()

    async def one() -> bool:
        ts = await start_ts()
        return mode != "ts" and bool((await zc.commit(ts, keys(rng), writes)).aborted)

    return await closed_loop(one, ns, lambda: leader_sample(ns.leader_pid, ns.leader_http))


async def etcd_client(ns: argparse.Namespace) -> dict[str, float]:
    import grpc

    from bench.peers import etcd

    out: dict[str, float] = {}
    value = b"v" * 8
    async with grpc.aio.insecure_channel(ns.addrs) as ch:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(etcd.TXN_METHOD)
        await asyncio.wait_for(ch.channel_ready(), 10)
        rng = random.Random()
        rev = 1

        async def txn() -> bool:
            """True when the compare failed (a conflict: nothing was put)."""
            nonlocal rev
            ok, got = etcd.txn_response(await call(etcd.txn_request(
                [b"txn/%016x" % k for k in keys(rng)], rev + 1, value), timeout=10))
            rev = max(rev, got)
            return not ok

        if ns.commits:
            lat = []
            warm = min(20, ns.commits)
            for i in range(ns.commits + warm):
                t0 = time.perf_counter()
                await txn()
                if i >= warm:
                    lat.append(time.perf_counter() - t0)
            out["txn_p50"] = p50_ms(lat)
        if ns.rates:
            got = await closed_loop(txn, ns, lambda: leader_sample(ns.leader_pid, ""))
            out |= {"txn_rate": got["rate"], "txn_failed": got["aborted"], "txn_leader_cpu": got["leader_cpu"],
                    "txn_client_cpu": got["client_cpu"]}
    return out


def memory_workload(commits: int) -> dict[str, int]:
    """endless_workload of tests/zero/test_oracle_state.py in a fresh process, imported by path."""
    code = ("import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('oracle_state_workload', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(json.dumps(m.endless_workload(int(sys.argv[2]))))\n")
    r = subprocess.run([sys.executable, "-c", code, str(WORKLOAD), str(commits)], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode != 0:
        raise RuntimeError(f"endless_workload failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# -- the orchestrator -------------------------------------------------------------------------------
def client(args: list[str], timeout: float) -> dict[str, float]:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"client {' '.join(args[:2])} failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def prepare(zc: Any) -> int:
    """A data node in a group and the bench's tablet claimed for it; the group."""
    from zero.pb import zero_pb2
    lead = zc.wait_leader()
    g = lead.stub.Connect(zero_pb2.ConnectRequest(addr="127.0.0.1:1"), timeout=10).member.group_id
    lead.stub.ShouldServe(zero_pb2.Tablet(predicate=TABLET, group_id=g), timeout=10)
    return int(g)


def one_run(zc: Any, group: int, etcd_lead: Any, *, seconds: float, warmup: float, commits: int,
            rates: str) -> dict[str, float]:
    """Every measure once: zero's client process, then etcd's."""
    lead = zc.wait_leader()
    addrs = [lead.addr] + [a for a in zc.addrs if a != lead.addr]
    common = ["--seconds", str(seconds), "--warmup", str(warmup), "--commits", str(commits),
              "--concurrency", str(CALLERS)]
    timeout = 120 + 4 * (seconds + warmup) + commits
    out = client(["--client", "zero", "--addrs", ",".join(addrs), "--group", str(group), "--rates", rates,
                  "--leader-pid", str(lead.pid), "--leader-http", lead.http, *common], timeout)
    if etcd_lead is not None:
        out |= {f"etcd_{k}": v for k, v in client(["--client", "etcd", "--addrs", etcd_lead.addr, "--rates", "txn",
                                                       "--leader-pid", str(etcd_lead.proc.pid), *common],
                                                      timeout).items()}
    return out


def measure(root: Path, *, runs: int, seconds: float, warmup: float, commits: int, with_etcd: bool,
            rates: str = "commit,bulk,ts", log: Callable[[str], None] = log) -> Results:
    """Parts 1 and 2, `runs` times, on 3 zeros and (with_etcd) 3 etcd members started here."""
    from procs import ProcCluster

    from bench.peers import etcd

    res: Results = {}
    zc = ProcCluster(root / "oracle-zero", 3, flags=())
    ec = None
    try:
        log("oracle: starting 3 zeros (default flags, fsync on)")
        zc.start()
        group = prepare(zc)
        if with_etcd:
            log("oracle: starting 3 etcd members")
            ec = etcd.EtcdCluster(root / "oracle-etcd").start()
        for run in range(runs):
            r = {"fdatasync_ms": fdatasync_ms(root), "load_average": os.getloadavg()[0]}
            r |= one_run(zc, group, ec.wait_leader() if ec else None, seconds=seconds, warmup=warmup,
                         commits=commits, rates=rates)
            for k, v in r.items():
                res.setdefault(k, []).append(v)
            log(f"  run {run + 1}: " + "  ".join(f"{k} {v:,.2f}" for k, v in r.items()))
    finally:
        zc.cleanup()
        if ec is not None:
            ec.cleanup()
    return res


def med(res: Results, k: str) -> float | None:
    return statistics.median(res[k]) if res.get(k) else None


def runs_of(res: Results, k: str, fmt: str) -> str:
    return ", ".join(format(x, fmt) for x in res.get(k, []))


def verdicts(res: Results) -> dict[str, str]:
    """Goal -> PASS, or FAIL with each part's outcome, from the medians (the etcd ratio:
    the median of each run's ratio)."""
    def verdict(parts: list[tuple[str, bool]]) -> str:
        if all(ok for _, ok in parts):
            return "PASS"
        return "FAIL (" + "; ".join(f"{what} {'met' if ok else 'missed'}" for what, ok in parts) + ")"

    out: dict[str, str] = {}
    c, w = med(res, "commit_p50"), med(res, "claim_p50")
    if c is not None and w is not None:
        out["latency"] = verdict([(f"≤ write + {LAT_SLACK_MS} ms", c <= w + LAT_SLACK_MS),
                                  (f"≤ {LAT_MAX_MS} ms", c <= LAT_MAX_MS)])
    rate = med(res, "commit_rate")
    if rate is not None:
        parts = [(f"≥ {RATE_GOAL:,}/s", rate >= RATE_GOAL)]
        if res.get("etcd_txn_rate"):
            parts.append((f"≥ {ETCD_RATIO:g}× etcd", ratio(res, "commit") >= ETCD_RATIO))
        out["rate"] = verdict(parts)
    return out


def ratio(res: Results, mode: str) -> float:
    return statistics.median(z / e for z, e in zip(res[f"{mode}_rate"], res["etcd_txn_rate"]))


def rows(res: Results) -> list[str]:
    """Two markdown tables of parts 1 and 2: the goals (medians, each run's figure, etcd's
    from the same runs), then the leader's view of the 64-caller windows."""
    v = verdicts(res)
    n = len(res.get("commit_p50") or res.get("commit_rate") or [])
    L = [f"| measure | median of {n} run(s) | every run | etcd Txn, same runs (median) | goal | |",
         "| --- | --- | --- | --- | --- | --- |"]
    if "commit_p50" in res:
        c, w, u, e = (med(res, k) for k in ("commit_p50", "claim_p50", "unary_p50", "etcd_txn_p50"))
        assert c is not None and w is not None and u is not None
        L += [f"| commit p50, lone caller (`ZeroClient.commit`, 2 keys) | {c:.2f} ms | "
              f"{runs_of(res, 'commit_p50', '.2f')} | {f'{e:.2f} ms (1 caller)' if e else 'not measured'} | "
              f"≤ write + {LAT_SLACK_MS} ms ({w + LAT_SLACK_MS:.2f} ms) and ≤ {LAT_MAX_MS} ms | {v['latency']} |",
              f"| one replicated write p50 (`ShouldServe` claim, same client, interleaved) | {w:.2f} ms | "
              f"{runs_of(res, 'claim_p50', '.2f')} | | reference | |",
              f"| commit p50, unary `CommitOrAbort` (no CommitStream) | {u:.2f} ms | "
              f"{runs_of(res, 'unary_p50', '.2f')} | | (shown) | |"]
    e = med(res, "etcd_txn_rate")
    for mode, what, goal in (
            ("commit", f"commits/s, {CALLERS} callers, `timestamp()` + `commit` each",
             f"≥ {RATE_GOAL:,} and ≥ {ETCD_RATIO:g}× etcd"),
            ("bulk", f"commits/s, {CALLERS} callers, start_ts taken in bulk", "(shown)"),
            ("ts", f"`timestamp()` alone /s, {CALLERS} callers, no commit", "(shown)")):
        rate = med(res, f"{mode}_rate")
        if rate is None:
            continue
        cmp = ""
        if mode != "ts":
            cmp = (f"{e:,.0f}/s (64 callers); zero/etcd {ratio(res, mode):.2f}× (runs "
                   f"{', '.join(f'{z / x:.2f}' for z, x in zip(res[f'{mode}_rate'], res['etcd_txn_rate']))})"
                   if e else "not measured")
        L.append(f"| {what} | {rate:,.0f} | {runs_of(res, f'{mode}_rate', ',.0f')} | {cmp} | {goal} | "
                 f"{v['rate'] if mode == 'commit' else ''} |")
    if "fdatasync_ms" in res:
        L += ["", f"Same runs: fdatasync of a 4 KiB append in the data dirs' filesystem, median per run "
                  f"{runs_of(res, 'fdatasync_ms', '.2f')} ms; 1-minute load average at each run's start "
                  f"{runs_of(res, 'load_average', '.1f')} (2 cores)."]
    if "commit_rate" in res:
        ab = sum(res.get("commit_aborted", [])) + sum(res.get("bulk_aborted", []))
        L += ["", f"Aborts (conflicts) over all runs: zero {ab:.0f}, etcd Txn compares failed "
                  f"{sum(res.get('etcd_txn_failed', [])):.0f}.", "",
              "| the leader in each window, medians | leader CPU | client CPU | proposals/s | txns per proposal | "
              "fsync, mean | propose → apply, mean | ReadIndex, mean | oracle.commit, mean |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for mode, what in (("lone", "zero, lone caller (commits, claims, unary commits)"),
                           ("commit", f"zero, {CALLERS} callers, timestamp() + commit"),
                           ("bulk", f"zero, {CALLERS} callers, start_ts in bulk"),
                           ("ts", f"zero, {CALLERS} callers, timestamp() alone")):
            if f"{mode}_leader_cpu" not in res:
                continue
            m = {k: med(res, f"{mode}_{k}") or 0.0 for k in ("leader_cpu", "client_cpu", "proposals_per_s",
                                                               "txns_per_proposal", "fsync_ms", "apply_ms",
                                                               "read_index_ms", "decide_ms")}
            times = " | ".join(f"{m[k]:.2f} ms" if m[k] else "" for k in ("fsync_ms", "apply_ms", "read_index_ms",
                                                                          "decide_ms"))
            per = f"{m['txns_per_proposal']:.1f}" if m["txns_per_proposal"] else ""
            L.append(f"| {what} | {m['leader_cpu']:.0%} | {m['client_cpu']:.0%} | {m['proposals_per_s']:,.0f} | "
                     f"{per} | {times} |")
        if e:
            L.append(f"| etcd, {CALLERS} callers, Txn | {med(res, 'etcd_txn_leader_cpu'):.0%} | "
                     f"{med(res, 'etcd_txn_client_cpu'):.0%} | | | | | | |")
    return L


def memory_rows(m: dict[str, int], commits: int) -> tuple[list[str], bool]:
    rss, snap = m["rss_end"] / m["rss_early"] - 1, m["snapshot_end"] / m["snapshot_early"] - 1
    ok = abs(rss) <= MEMORY_TOLERANCE and abs(snap) <= MEMORY_TOLERANCE
    return [
        f"| conflict-table memory, {commits:,} commits with safe_ts advancing | after 30% | at the end | change | "
        "goal | |", "| --- | --- | --- | --- | --- | --- |",
        f"| RSS of the process | {m['rss_early'] / 2**20:.1f} MiB | {m['rss_end'] / 2**20:.1f} MiB | {rss:+.1%} | "
        f"±{MEMORY_TOLERANCE:.0%} | {'PASS' if abs(rss) <= MEMORY_TOLERANCE else 'FAIL'} |",
        f"| snapshot size | {m['snapshot_early']:,} B | {m['snapshot_end']:,} B | {snap:+.1%} | "
        f"±{MEMORY_TOLERANCE:.0%} | {'PASS' if abs(snap) <= MEMORY_TOLERANCE else 'FAIL'} |",
        f"| conflict keys / decisions kept | {m['keys_early']:,} / {m['decisions_early']:,} | "
        f"{m['keys_end']:,} / {m['decisions_end']:,} | | | |"], ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per rate, after --warmup")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--commits", type=int, default=300, help="lone-caller commits (and writes) per run")
    ap.add_argument("--memory-commits", type=int, default=1_000_000)
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--dir", help="where the data dirs go (default: a temp dir)")
    # A client process of this bench (internal).
    ap.add_argument("--client", choices=("zero", "etcd"), help=argparse.SUPPRESS)
    ap.add_argument("--addrs", help=argparse.SUPPRESS)
    ap.add_argument("--group", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--rates", default="", help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=CALLERS, help=argparse.SUPPRESS)
    ap.add_argument("--leader-pid", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--leader-http", default="", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.client:
        fn = zero_client if ns.client == "zero" else etcd_client
        print(json.dumps(asyncio.run(fn(ns))), flush=True)
        return 0

    from bench.peers import etcd
    with_etcd = not ns.no_etcd and etcd.install(False) is None
    root = Path(tempfile.mkdtemp(prefix="zero-oracle-bench-", dir=ns.dir))
    try:
        log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        res = measure(root, runs=ns.runs, seconds=ns.seconds, warmup=ns.warmup, commits=ns.commits,
                      with_etcd=with_etcd) if ns.runs else {}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ok = all(x == "PASS" for x in verdicts(res).values())
    mem_lines: list[str] = []
    if ns.memory_commits:
        log(f"oracle: endless_workload({ns.memory_commits:,}) of {WORKLOAD.relative_to(REPO)}")
        t = time.monotonic()
        mem_lines, mem_ok = memory_rows(memory_workload(ns.memory_commits), ns.memory_commits)
        mem_lines.append(f"\n{ns.memory_commits:,} commits through the state machine in {time.monotonic() - t:.0f} s")
        ok = ok and mem_ok
    print()
    if res:
        print(f"The oracle, 3 zeros{' and 3 etcd members' if with_etcd else ' (etcd not measured)'}: "
              f"{ns.runs} run(s), {ns.seconds:g} s per rate after {ns.warmup:g} s, {ns.commits} lone commits per run")
        print("\n".join(rows(res)))
    if mem_lines:
        print("\n" + "\n".join(mem_lines))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
