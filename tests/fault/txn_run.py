"""One seeded, bounded run of a transactional workload (bank.py or list_append.py) under
the nemesis: three `zero run` on 127.0.0.1 and one durable `zero datanode` per group
(moves_run.MovesRig), clients through zero.client and the Txn client, Oracle-stream
subscribers, optionally a mover moving the workload's tablets between groups; the
nemesis of the move runs (zero faults plus kill -9 and SIGSTOP of data nodes). Then:

    1. a quiet tail without faults, until safe_ts has moved past the setup's writes
       (zero's liveness window after the last leader change at the least) and for
       COLLECTED seconds more, under load: the data nodes collect versions, and clients
       read what collection must keep (liveness fails a run where safe_ts never moved
       within QUIET_MAX seconds);
    2. the clients finish their transaction and stop; heal; every zero and data node is
       killed -9 and restarted (SPEC semantics 3: decisions and versions survive);
    3. a final read of every key in a transaction, retried until the cluster serves it;
    4. every transaction left undecided is decided (TryAbort) and recorded;
    5. the checkers: txn_checks.py's, the workload's own, data nodes' exits nobody asked
       for, a workload that crashed, and liveness (enough commits and reads, not mostly
       indeterminate while no fault was active, every subscriber heard the stream).

`TxnRun.check()` raises AssertionError naming every violation and the file the full
history was written to (the processes' logs are copied beside it)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import bank, checkers, list_append, txn_checks
from .history import FAIL, INFO, OK, History, Op
from .moves_run import MovesRig, MovesRun, _copy_logs
from .moves_workload import Monitor, Mover, MovesNemesis
from .txn_workload import TxnWorkload

__all__ = ["run_txn_workload", "txn_rig", "WORKLOADS", "MIN_STREAM_EVENTS", "QUIET_MAX", "COLLECTED"]

WORKLOADS = ("bank", "list_append")
MIN_STREAM_EVENTS = 20  # per subscriber over a run (healthy: thousands)
QUIET_MAX = 45.0  # seconds the quiet tail waits for safe_ts (zero's liveness window is 10 s)
COLLECTED = 4.0  # seconds of load after safe_ts passed the setup (the nodes collect every 1 s)


def txn_rig(root: Path, *, proxies: bool = False, seed: int = 0) -> MovesRig:
    """moves_run.MovesRig (not started) with the rebalancer off and no copy delay;
    proxies: the zeros' peer links go through the fault proxy (nemesis.PROXY_FAULTS)."""
    return MovesRig(root, rebalance="0", chunk_delay="0", proxies=proxies, seed=seed)


def run_txn_workload(rig: MovesRig, *, workload: str, name: str, seed: int, duration: float,
                     faults: Sequence[str], **kw: Any) -> MovesRun:
    """The run; if it breaks down before its checks, the history and logs so far are
    written out and the AssertionError names them."""
    h = History(seed, name)
    try:
        return _run(rig, h, workload=workload, duration=duration, faults=faults, **kw)
    except Exception as e:
        path = h.dump()
        _copy_logs(path, rig.logs())
        raise AssertionError(f"the run (seed {seed}) broke down before its checks: {e!r}; "
                             f"full history in {path}") from e


def _final(wl: TxnWorkload, workload: str, h: History, timeout: float) -> Op | None:
    """The final read, retried until it is answered."""
    deadline = time.monotonic() + timeout
    async def read() -> Op:
        return await (bank.final_read(wl) if workload == "bank" else list_append.final_read(wl))
    while time.monotonic() < deadline:
        try:
            op: Op = wl.call(read, 30)
            if op.type == OK:
                return op
        except Exception:  # noqa: BLE001 - the cluster is still settling: retry
            pass
        time.sleep(0.5)
    return None


def _run(rig: MovesRig, h: History, *, workload: str, duration: float, faults: Sequence[str], clients: int = 4,
         subscribers: int = 2, mover: bool = False, quiet: float = QUIET_MAX,
         nemesis: Callable[..., MovesNemesis] = MovesNemesis) -> MovesRun:
    """nemesis: MovesNemesis or a subclass's factory (ns_txn_run's adds partitions)."""
    t_start = time.monotonic()
    seed = h.seed
    groups = rig.groups
    step = bank.step if workload == "bank" else list_append.step
    h.meta.update(workload=workload, duration=duration, faults=list(faults), clients=clients, mover=mover,
                  zeros=rig.cluster.addrs, datanodes={d.name: d.addr for d in rig.datanodes})
    wl = TxnWorkload(rig.cluster.addrs, h, seed, step, clients=clients, subscribers=subscribers)
    wl.start()
    wl.wait_ready(30)
    if workload == "bank":
        opened: Op = wl.call(lambda: bank.setup(wl, groups), 60)
        tablets = [f"bank{g}" for g in groups]
    else:
        opened = wl.call(lambda: list_append.setup(wl, groups), 60)
        tablets = [f"la{g}" for g in groups]
    wl.start_clients()

    stop = threading.Event()
    mon_stop = threading.Event()
    monitor = Monitor(rig.cluster.addrs, h, mon_stop, tablets=tablets)
    movers = [Mover(rig.cluster.addrs, groups, tablets, h, random.Random(seed + 3), stop, gap=(0.5, 1.5))] \
        if mover else []
    nem = nemesis(rig.cluster, h, seed + 1, duration=duration, faults=faults, datanodes=rig.datanodes,
                  monitor=monitor)
    for t in (monitor, *movers):
        t.start()
    nem.start()
    nem.join(duration + 120)
    # A quiet tail (see the module doc).
    op = h.begin("schedule", "quiet")
    t0, end = time.monotonic(), time.monotonic() + quiet
    while wl.safe_ts <= opened.value["commit_ts"] and time.monotonic() < end:
        time.sleep(0.2)
    passed = time.monotonic() - t0
    time.sleep(COLLECTED)
    h.end(op, OK, {"seconds": round(time.monotonic() - t0, 1), "safe_ts_passed_after": round(passed, 1)})
    stop.set()
    for t in movers:
        t.join(15)
    wl.stop_clients()

    op = h.begin("nemesis", "final_restart")
    rig.cluster.wait_ready(30)
    rig.cluster.restart_all()
    for d in rig.datanodes:
        d.kill9()
        d.start()
    rig.cluster.wait_ready(30)
    rig.wait_datanodes(30)
    h.end(op, OK, {"restarted": ["zeros", "datanodes"]})
    res = MovesRun(h, faults=nem.injected + 1, logs=rig.logs())
    if nem.error is not None:
        res.violations["nemesis"] = [f"the nemesis crashed: {nem.error!r}"]
    final = _final(wl, workload, h, 60)
    left = wl.finish()
    time.sleep(1.0)  # the subscribers hear the final commits
    wl.stop()
    wl.join(30)
    mon_stop.set()
    monitor.join(5)
    for d in rig.datanodes:
        d.note_exit()

    ops = h.ops()
    procs = {f"c{i}" for i in range(clients)}
    subs = [f"s{i}" for i in range(subscribers)]
    events = {s: sum(len(o.value.get("events", ())) for o in ops if o.process == s and o.f == "oracle")
              for s in subs}
    safe_ts = max((e[1] for o in ops if o.f == "oracle" for e in o.value.get("events", ()) if e[0] == "s"),
                  default=0)
    collected = safe_ts > opened.value.get("commit_ts", 0)
    res.violations.update(
        decisions=txn_checks.decisions(ops),
        realtime=txn_checks.realtime(ops),
        snapshots=txn_checks.snapshots(ops, empty=None if workload == "bank" else []),
        first_committer_wins=txn_checks.first_committer_wins(ops),
        watermark=txn_checks.watermark(ops),
        final=[] if final is not None else ["final: the final read was never answered"],
        datanodes=[x for d in rig.datanodes for x in d.exits],
        zeros=rig.cluster.unasked_exits(),
        workload=([f"the workload thread failed: {wl.error!r}"] if wl.error else [])
        + [f"a client crashed: {o.error}" for o in ops if o.f == "crash"],
        liveness=checkers.liveness([o for o in ops if o.process in procs],
                                   bank.minimums(clients) if workload == "bank" else list_append.minimums(clients),
                                   faults=checkers.fault_windows(ops))
        + [f"subscriber {s} heard {n} stream events, fewer than {MIN_STREAM_EVENTS}" for s, n in events.items()
           if n < MIN_STREAM_EVENTS]
        + ([] if collected else [f"safe_ts ({safe_ts}) never passed the setup's commit at "
                                 f"{opened.value.get('commit_ts')}: garbage collection was not exercised"]),
    )
    if workload == "bank":
        res.violations["total"] = bank.total(ops)
    else:
        fin = list_append.final_lists(final) if final is not None else {}
        res.violations.update(prefixes=list_append.prefixes(ops), aborted_reads=list_append.aborted_reads(ops),
                              lost_updates=list_append.lost_updates(ops, fin), fractured=list_append.fractured(ops))
    txns = [o for o in ops if o.process in procs and o.f in ("transfer", "txn")]
    reasons: dict[str, int] = {}
    for o in txns:
        if o.type == FAIL:
            r = o.value.get("reason") or o.value.get("phase", "?")
            reasons[r] = reasons.get(r, 0) + 1
    res.figures = {
        "committed": sum(1 for o in txns if o.type == OK),
        "aborted": reasons,
        "indeterminate": sum(1 for o in txns if o.type == INFO),
        "indeterminate_committed": sum(1 for o in txns if o.type == INFO and "commit_ts" in o.value.get("status", {})),
        "reads_ok": sum(1 for o in ops if o.process in procs and o.f == "read" and o.type == OK),
        "decided_at_end": left,
        "unknown": len(txn_checks.unknown(ops)),
        "stream_sessions": sum(1 for o in ops if o.f == "oracle"),
        "stream_events": events,
        "safe_ts": safe_ts,
        "moves_committed": sum(1 for o in ops if o.f == "move" and o.type == OK and o.value.get("committed")),
        "datanode_faults": sum(1 for o in ops if o.f.endswith("_datanode") and o.type == OK),
    }
    h.meta["figures"] = res.figures
    res.operations = sum(1 for o in ops if o.process in procs and o.type == OK)
    res.seconds = time.monotonic() - t_start
    return res

