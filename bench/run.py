"""zero side by side with PySyncObj 0.3.17 and etcd 3.4, in one run on this machine.

    python -m bench [--quick] [--out docs/BENCHMARKS.md] [--runs N] [--seconds S] [--trials N]
                    [--callers 1,64] [--plot] [--no-install] [--skip-own]

1. Replicated writes on 3-node loopback clusters, the same 64-byte payload, a new key per
   write, closed-loop clients at concurrency 1 and 64; throughput and p50/p99:
   - zero: 3 `zero run` processes, default flags; the write is a `ShouldServe` claim of a
     new tablet (a linearizable read barrier, then one Raft proposal, fdatasynced on a
     quorum before the answer); the 64-byte tablet name is the payload.
   - etcd: 3 members (Debian etcd-server), `KV/Put` of a 64-byte value (fsynced WAL).
   - PySyncObj: 3 processes, a `@replicated` dict set called synchronously from threads in
     the leader's process (PySyncObj has no client protocol), default config (no fsync).
   zero and etcd are driven by the same client (bench/peers/load.py: grpcio, raw bytes,
   its own process), and in the same runs by the same client against the no-op
   `grpc.health.v1.Health/Check` of the same server, so the client's and gRPC's own cost
   is measured separately. All three clusters run at once and the runs are interleaved
   (system by system within each run), so background load hits all of them alike;
   medians of --runs runs are reported with min–max.
   In each run, on the same zero and etcd clusters, the oracle (bench/oracle_bench.py's
   one_run): a lone caller's `ZeroClient.commit` p50 beside a `ShouldServe` claim, and 64
   concurrent transactions (timestamp() + commit of 2 keys) against etcd's `KV/Txn`, a
   compare-and-put of 2 keys, at 64 callers.
2. Failover after kill -9 of the leader (bench/peers/failover.py, the same writer loop
   for both): zero at its default election settings (tick 100 ms x 5 ticks) and at
   etcd's (tick 100 ms x 10 ticks = 1 s), etcd at its defaults (heartbeat 100 ms,
   election timeout 1000 ms, which is also the "same timeout" setting: one series).
3. zero's own benches: the other bench/*_bench.py scripts as subprocesses, at short
   settings, to check they run and meet their goals; their output is printed with their exit
   status, not written to --out (each has its own section in docs/BENCHMARKS.md, with the
   command that produced its figures).

--plot (matplotlib: `pip install -e '.[bench]'`) also draws the writes per second against
the callers (1, 4, 16, 64 unless --callers says otherwise) and every failover trial
(bench/plot.py), as PNGs beside --out (bench-throughput.png, bench-failover.png), linked
from the section.

Writes the side-by-side section (1 and 2, with the machine) between markers into --out
(other sections are kept) and prints it. Every peer figure in it is measured in the same
run as zero's; a peer that was not measured is named as skipped, never filled in.
Everything binds 127.0.0.1; every process started is killed on the way out. The peers are
installed when missing (pip into a private venv under ~/.cache/zero-bench, apt-get for
etcd); a peer that cannot be installed is skipped with the reason printed. Exit status 1
when zero's part fails.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # support, which procs imports
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import grpc  # noqa: E402
from procs import ProcCluster  # noqa: E402

from bench import oracle_bench, plot  # noqa: E402
from bench.peers import etcd, failover, pysyncobj_cluster  # noqa: E402
from zero.pb import zero_pb2  # noqa: E402

START, END = "<!-- bench/run.py: start -->", "<!-- bench/run.py: end -->"
ZERO_DEFAULT: tuple[str, ...] = ()
ZERO_1S = ("--tick", "100ms", "--election-ticks", "10")
ETCD_1S = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults, spelled out
# The oracle's part of a run: lone-caller commits, seconds and warm-up per rate (--quick: a few seconds in all).
ORACLE = {False: (300, None, None), True: (10, 0.5, 0.2)}  # None: --seconds / --warmup


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the machine ----------------------------------------------------------------------------------
def machine(data_dir: Path) -> list[str]:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    fsync = fsync_ms(data_dir)
    fs = subprocess.run(["df", "-T", str(data_dir)], capture_output=True, text=True).stdout.splitlines()[-1:]
    return [f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
            f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem}; kernel {platform.release()}",
            f"- Python {platform.python_version()}, grpcio {grpc.__version__}",
            f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"- data dirs: {fs[0].split()[1] if fs else '?'} under {data_dir.parent}; "
            f"fdatasync of a 4 KiB append: median {fsync:.2f} ms"]


def fsync_ms(d: Path, n: int = 100) -> float:
    p, ts = d / "fsync.probe", []
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            ts.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        p.unlink()
    return statistics.median(ts) * 1e3


# -- 1. replicated writes ---------------------------------------------------------------------------
def load(addr: str, op: str, conc: int, seconds: float, warmup: float) -> dict[str, Any]:
    import json
    r = subprocess.run([sys.executable, "-m", "bench.peers.load", "--addr", addr, "--op", op, "--concurrency",
                        str(conc), "--seconds", str(seconds), "--warmup", str(warmup)],
                       cwd=REPO, capture_output=True, text=True, timeout=seconds + warmup + 60)
    if r.returncode != 0:
        raise RuntimeError(f"load client {op} on {addr} failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.splitlines()[-1])


def writes(ns: argparse.Namespace, root: Path, peers: dict[str, Any],
           oracle: oracle_bench.Results) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """{(measure, concurrency): [result per run]}; measures: zero, zero no-op, etcd, etcd no-op, pysyncobj.
    The oracle's figures of each run (zero's commits and etcd's Txn, on the same clusters) go into `oracle`."""
    res: dict[tuple[str, int], list[dict[str, Any]]] = {}
    zc = ProcCluster(root / "zero-writes", 3, flags=ZERO_DEFAULT)
    ec = pc = None
    try:
        log("starting 3 zeros (default flags)")
        zc.start()
        # One data node, so group 1 exists and ShouldServe can claim tablets for it.
        zc.wait_leader().stub.Connect(zero_pb2.ConnectRequest(addr="127.0.0.1:1"), timeout=10)
        group = oracle_bench.prepare(zc)  # the oracle's tablet, claimed for that data node's group
        oracle_failed = False
        if "etcd" in peers:
            log("starting 3 etcd members")
            ec = etcd.EtcdCluster(root / "etcd-writes").start()
        if "pysyncobj" in peers:
            log("starting 3 PySyncObj nodes")
            pc = pysyncobj_cluster.PySyncObjCluster(peers["pysyncobj"], root / "pysyncobj").start()
        for run in range(ns.runs):
            for conc in ns.callers:
                zl = zc.wait_leader().addr
                plan: list[tuple[str, Any]] = [("zero no-op", lambda: load(zl, "health", conc, ns.seconds, ns.warmup)),
                                               ("zero", lambda: load(zl, "zero-claim", conc, ns.seconds, ns.warmup))]
                if ec is not None:
                    el = ec.wait_leader().addr
                    plan += [("etcd no-op", lambda: load(el, "health", conc, ns.seconds, ns.warmup)),
                             ("etcd", lambda: load(el, "etcd-put", conc, ns.seconds, ns.warmup))]
                if pc is not None:
                    plan.append(("pysyncobj", lambda: pc.bench(conc, ns.seconds, ns.warmup)))
                for name, fn in plan:
                    r = fn()
                    res.setdefault((name, conc), []).append(r)
                    log(f"  run {run + 1} {name:<10} c={conc:<2} {r['rate']:>9,.0f}/s  p50 {r['p50_ms']:7.2f} ms"
                        f"  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}{'  ' + r['first_error'] if r['errors'] else ''}")
            # The oracle: lone commits and 64 concurrent transactions, zero's and etcd's Txn (bench/oracle_bench.py).
            # A failure there is logged and ends the oracle's part only: the write figures are kept.
            if oracle_failed:
                continue
            t = time.monotonic()
            commits, seconds, warmup = ORACLE[ns.quick]
            try:
                o = oracle_bench.one_run(zc, group, ec.wait_leader() if ec is not None else None,
                                         seconds=seconds or ns.seconds, warmup=warmup or ns.warmup, commits=commits,
                                         rates="commit")
            except Exception as e:  # noqa: BLE001 - reported; main() fails the run without oracle figures
                log(f"FAILED: the oracle: {type(e).__name__}: {e}")
                oracle_failed = True
                continue
            for k, v in o.items():
                oracle.setdefault(k, []).append(v)
            log(f"  run {run + 1} oracle     commit p50 {o['commit_p50']:.2f} ms (write {o['claim_p50']:.2f} ms), "
                f"c={oracle_bench.CALLERS} {o['commit_rate']:,.0f} commits/s"
                + (f"; etcd Txn p50 {o['etcd_txn_p50']:.2f} ms, {o['etcd_txn_rate']:,.0f}/s" if ec is not None else "")
                + f"  ({time.monotonic() - t:.1f} s)")
    finally:
        zc.cleanup()
        if ec is not None:
            ec.cleanup()
        if pc is not None:
            pc.cleanup()
    return res


def writes_table(res: dict[tuple[str, int], list[dict[str, Any]]], callers: list[int]) -> list[str]:
    def med(name: str, conc: int, key: str) -> float | None:
        rs = res.get((name, conc))
        return statistics.median(r[key] for r in rs) if rs else None

    out = ["| system | callers | writes/s, median (min–max) | p50 ms | p99 ms | no-op/s (same client) | "
           "writes/no-op | zero/system |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for conc in callers:
        zrate = med("zero", conc, "rate")
        for name in ("zero", "etcd", "pysyncobj"):
            rs = res.get((name, conc))
            if not rs:
                continue
            rates = [r["rate"] for r in rs]
            rate = statistics.median(rates)
            noop = med(f"{name} no-op", conc, "rate")
            errs = sum(r["errors"] for r in rs)
            out.append(
                f"| {name}{f' ({errs} errors)' if errs else ''} | {conc} | {rate:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
                f"{med(name, conc, 'p50_ms'):.2f} | {med(name, conc, 'p99_ms'):.2f} | "
                f"{f'{noop:,.0f}' if noop else 'n/a (in-process)'} | {f'{rate / noop:.0%}' if noop else 'n/a'} | "
                f"{'' if name == 'zero' or not zrate or not rate else f'{zrate / rate:.2f}×'} |")
    return out


# -- 2. failover -----------------------------------------------------------------------------------
def failovers(ns: argparse.Namespace, root: Path, peers: dict[str, Any]) -> list[tuple[str, str, list[float]]]:
    rows: list[tuple[str, str, list[float]]] = []
    for label, flags in (("zero, default (tick 100 ms × 5: 0.5–1 s)", ZERO_DEFAULT),
                         ("zero, 1 s (tick 100 ms × 10: 1–2 s)", ZERO_1S)):
        zc = ProcCluster(root / f"zero-failover-{len(rows)}", 3, flags=flags)
        try:
            log(f"failover: {label}")
            zc.start()
            zc.wait_leader().stub.Connect(zero_pb2.ConnectRequest(addr="127.0.0.1:1"), timeout=10)

            def settle(zc: ProcCluster = zc) -> Any:
                lead = zc.wait_leader(30)
                for z in zc.zeros:
                    z.wait_healthy(30)
                return lead

            def restart(z: Any) -> None:
                z.start()
                z.wait_healthy(30)

            xs = failover.trials(ns.trials, zc.addrs, "zero-claim", settle, lambda z: z.kill9(), restart, log, "zero")
            rows.append((label, "ShouldServe claim", xs))
        finally:
            zc.cleanup()
    if "etcd" in peers:
        ec = etcd.EtcdCluster(root / "etcd-failover", ETCD_1S)
        try:
            log("failover: etcd, default = 1 s (heartbeat 100 ms, election timeout 1000 ms: 1–2 s)")
            ec.start()

            def restart_e(m: Any) -> None:
                ec.restart(m)

            xs = failover.trials(ns.trials, ec.addrs, "etcd-put", lambda: ec.wait_leader(30),
                                 lambda m: m.kill9(), restart_e, log, "etcd")
            rows.append(("etcd, default = 1 s (heartbeat 100 ms, election timeout 1000 ms: 1–2 s)", "KV/Put", xs))
        finally:
            ec.cleanup()
    return rows


# -- 3. zero's own benches ---------------------------------------------------------------------------
OWN_QUICK = [("raftcore_bench.py", ["--seconds", "0.5", "--runs", "1"]),
             ("leases_bench.py", ["--calls", "200", "--idle-seconds", "1"])]
OWN_FULL = [("raftcore_bench.py", []),
            ("wal_bench.py", ["--batches", "300"]),
            ("leases_bench.py", []),
            ("replication_bench.py", ["--seconds", "3", "--latency-writes", "300"]),
            ("idle_cpu_bench.py", []),
            ("datanode_api_bench.py", ["--runs", "1", "--seconds", "2", "--watchers", "50", "--watcher-procs", "1"]),
            ("backup_bench.py", [])]


def own(ns: argparse.Namespace, root: Path) -> list[tuple[str, str, int]]:
    out = []
    for script, args in (OWN_QUICK if ns.quick else OWN_FULL):
        log(f"zero's own: bench/{script} {' '.join(args)}")
        d = root / f"own-{script}"
        d.mkdir()
        extra = ["--dir", str(d)] if script in ("wal_bench.py", "replication_bench.py", "idle_cpu_bench.py",
                                                "backup_bench.py") else []
        t = time.monotonic()
        try:
            r = subprocess.run([sys.executable, str(REPO / "bench" / script), *args, *extra], cwd=d,
                               capture_output=True, text=True, timeout=900)
            text, rc = r.stdout + (f"\n[stderr tail]\n{r.stderr[-800:]}" if r.returncode else ""), r.returncode
        except subprocess.TimeoutExpired as e:
            got = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text, rc = f"{got}\n[timed out after 900 s]", -1
        log(text.rstrip())
        out.append((f"bench/{script} {' '.join(args)}  ({time.monotonic() - t:.0f} s)", text.rstrip(), rc))
    return out


# -- the report --------------------------------------------------------------------------------------
def report(ns: argparse.Namespace, mach: list[str], versions: dict[str, str], skipped: dict[str, str],
           res: dict[tuple[str, int], list[dict[str, Any]]], fo: list[tuple[str, str, list[float]]],
           oracle: oracle_bench.Results, plots: list[Path] | None = None) -> str:
    mode = "quick (--quick: a smoke test, too short to judge speed)" if ns.quick else "full"
    L = [START, "## Side by side with PySyncObj and etcd", "",
         f"`python -m bench{' --quick' if ns.quick else ''}` (bench/run.py), mode: {mode}; "
         f"{ns.runs} run(s) of {ns.seconds:g} s after {ns.warmup:g} s of warm-up per measure, {ns.trials} failover "
         "trial(s) per setting. Regenerated by the runner: edit bench/run.py, not this section.", "", *mach,
         f"- peers: {', '.join(f'{k} {v}' for k, v in versions.items())}",
         "- the machine may be shared (other test suites running alongside): the load average above "
         "says how busy it was; judge ratios from the same run, not absolute rates", ""]
    for k, why in skipped.items():
        L.append(f"- **{k} skipped:** {why}")
    if skipped:
        L.append("")
    L += ["**Fairness.** Durability: zero fdatasyncs its WAL on a quorum before answering, "
          "etcd fsyncs its WAL (no --unsafe-no-fsync), PySyncObj never fsyncs (default in-memory "
          "journal) — its rows are not durable writes. zero and etcd are driven by one client "
          "(bench/peers/load.py: grpcio asyncio, raw bytes, its own process, one channel, closed "
          "loop) against their leader, and the same client calls the no-op "
          "`grpc.health.v1.Health/Check` of the same server in the same run: the no-op column is "
          "the ceiling the client and gRPC allow, writes/no-op the share the system keeps. "
          "PySyncObj has no client protocol: its callers are threads in the leader's own process, "
          "so its rows pay no client hop. zero's write is a `ShouldServe` claim of a new tablet "
          "(one proposal whose apply decides, one new tablet per call); etcd's a `KV/Put`; "
          "PySyncObj's a `@replicated` dict set, `sync=True`; each with a new key and a 64-byte "
          "payload. The three clusters run at the same time and each run measures every system "
          "in turn, so background load falls on all; nothing is pinned to a core. All on "
          "127.0.0.1.", "", "### Replicated writes, 3 nodes on loopback", ""]
    L += writes_table(res, ns.callers) if res else ["not measured"]
    L += ["", "zero/system is zero's writes/s over the system's. PySyncObj at its default config "
          "answers a sync call on its append-entries timer, not on the network, so its p50 above "
          "hardly moves with the callers and its rate grows with them; its batched, asynchronous "
          "mode (thousands of calls outstanding) is not measured by this closed loop of 1 or 64 "
          "callers. The no-op rate caps what the single Python client process can measure: where "
          "writes come near it, the client is the limit."]
    L += ["", "### The oracle: transactions, 3 nodes on loopback", "",
          "On the same clusters, in the same runs (bench/oracle_bench.py's `one_run`; its own section below "
          "has the bench's full figures). zero: `ZeroClient.commit` of 2 random conflict keys on a claimed tablet, "
          "start_ts from `ZeroClient.timestamp()`; a lone caller (start_ts taken before the timer starts, the "
          f"write a `ShouldServe` claim interleaved with the commits) and {oracle_bench.CALLERS} asyncio tasks in "
          "one client process, each looping timestamp() + commit (merged into CommitBatches on one CommitStream). "
          f"etcd: `KV/Txn` from one grpcio channel (raw bytes), {oracle_bench.CALLERS} callers, each a "
          "compare-and-put of 2 new keys (mod_revision at most the newest revision seen, then a put of both): "
          "one RPC per transaction where zero's loop makes two.", ""]
    L += oracle_bench.rows(oracle) if oracle.get("commit_rate") else ["not measured"]
    L += ["", "### Failover: kill -9 of the leader → first acknowledged write sent after the kill", "",
          f"Same driver for both (bench/peers/failover.py): {failover.WRITERS} writer threads, {failover.DEADLINE:g} s "
          "deadline per call, on error the next member after 20 ms; after each trial the killed member "
          "restarts on its data dir and the cluster settles.", "",
          "| system, election setting | write | kill → first ack |", "| --- | --- | --- |"]
    L += [f"| {label} | {w} | {failover.summary(xs)} |" for label, w, xs in fo] or ["| not measured | | |"]
    if fo:
        zd = [x for label, _, xs in fo if label.startswith("zero, 1 s") for x in xs if x != float("inf")]
        et = [x for label, _, xs in fo if label.startswith("etcd") for x in xs if x != float("inf")]
        if zd and et:
            L += ["", f"At the same 1 s election timeout, zero/etcd median: "
                      f"{statistics.median(zd) / statistics.median(et):.2f}×."]
    if plots:
        L += ["", "Pictures of this run (`--plot`, bench/plot.py): "
              + ", ".join(f"[{p.stem}]({p.name})" for p in plots) + "."]
        L += [f"![{p.stem}]({p.name})" for p in plots]
    L += ["", END]
    return "\n".join(L) + "\n"


def write_out(path: Path, section: str) -> None:
    """Replace the runner's section of `path` with `section` (appended when missing)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\nFigures from the scripts in bench/.\n"
    if START in old and END in old:
        new = old[:old.index(START)] + section.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 short run, 1 trial, few own benches")
    ap.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--runs", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--trials", type=int)
    ap.add_argument("--callers", help="comma-separated closed-loop concurrencies (default 1,64; 1,4,16,64 with --plot)")
    ap.add_argument("--plot", action="store_true", help="also draw PNGs beside --out (needs the bench extra)")
    ap.add_argument("--no-install", action="store_true", help="skip peers that are not installed")
    ap.add_argument("--skip-own", action="store_true", help="do not run zero's own benches")
    ns = ap.parse_args(argv)
    for k, quick, full in (("runs", 1, 3), ("seconds", 1.0, 5.0), ("warmup", 0.3, 1.0), ("trials", 1, 10)):
        if getattr(ns, k) is None:
            setattr(ns, k, quick if ns.quick else full)
    try:
        given = ns.callers if ns.callers is not None else ("1,4,16,64" if ns.plot else "1,64")
        ns.callers = sorted({int(c) for c in given.split(",")})
    except ValueError:
        ap.error(f"--callers: comma-separated positive integers, not {ns.callers!r}")
    if not ns.callers or ns.callers[0] < 1:
        ap.error("--callers: comma-separated positive integers")
    if ns.plot and (why := plot.available()) is not None:
        ap.error(f"--plot: {why}")

    # SIGTERM unwinds like Ctrl-C, so the `finally`s stop every cluster this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    root = Path(tempfile.mkdtemp(prefix="zero-bench-"))
    ok = True
    try:
        mach = machine(root)
        peers: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        versions = {}
        py, why = pysyncobj_cluster.install(not ns.no_install)
        if py:
            peers["pysyncobj"] = py
            versions["PySyncObj"] = pysyncobj_cluster.VERSION
        else:
            skipped["PySyncObj"] = why or "?"
        why = etcd.install(not ns.no_install)
        if why is None:
            peers["etcd"] = True
            versions["etcd"] = etcd.version()
        else:
            skipped["etcd"] = why
        for k, w in skipped.items():
            log(f"SKIPPING {k}: {w}")
        res: dict[tuple[str, int], list[dict[str, Any]]] = {}
        oracle: oracle_bench.Results = {}
        fo: list[tuple[str, str, list[float]]] = []
        own_out: list[tuple[str, str, int]] = []
        try:
            res = writes(ns, root, peers, oracle)
            fo = failovers(ns, root, peers)
        except Exception as e:  # report what was measured, then fail
            ok = False
            log(f"FAILED: {type(e).__name__}: {e}")
        if not ns.skip_own:
            own_out = own(ns, root)
            # A goal missed by an own bench is a figure (its exit status is shown), not a runner failure.
        plots: list[Path] = []
        if ns.plot and (res or fo):
            out_dir = Path(ns.out).parent
            plots = ([plot.throughput(res, out_dir / "bench-throughput.png")] if res else []) + \
                ([plot.failover(fo, out_dir / "bench-failover.png")] if fo else [])
            for p in plots:
                log(f"wrote {p}")
        section = report(ns, mach, versions, skipped, res, fo, oracle, plots)
        print("\n" + section)
        write_out(Path(ns.out), section)
        log(f"wrote {ns.out}")
        if own_out:
            log("zero's own benches (output above; not written to the file):")
            for title, _, rc in own_out:
                log(f"  {title}: exit status {rc}")
        zero_rows = ("zero", 1) in res and ("zero", 64) in res and any(label.startswith("zero") for label, _, _ in fo) \
            and bool(oracle.get("commit_rate"))
        return 0 if ok and zero_rows else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
