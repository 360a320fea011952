"""One seeded, bounded run of the move workload under the nemesis (issue 11): three
`zero run` on 127.0.0.1 and one durable reference data node per group; writers, a mover
and a monitor (moves_workload.py) plus the lease/claim/connect/watcher workload
(workloads.py) while the nemesis injects faults; then heal, a full restart (of the data
nodes too when they were faulted), and the checks:

    1. settle: within SETTLE seconds of the restart, no zero holds an active move and a
       write to every tablet at its owner is acknowledged (moves_checks.writable);
    2. read back every key any write named, at the tablet's final owner
       (moves_checks.keys), and a read of each tablet at every other group, which must
       refuse naming that owner (moves_checks.owners);
    3. the sampled read-only spans and owners, the data nodes' error answers and exits
       nobody asked for; the lease, claim, membership and watcher checkers of
       tests/fault/checkers.py;
    4. liveness (checkers.liveness, moves_minimums): enough acknowledged writes and lease
       answers, no kind mostly indeterminate, updates at every watcher, and at least one
       move the mover saw commit - a run whose moves all rolled back checked no move.

`MovesRun.check()` raises AssertionError naming every violation and the file the full
history was written to (the zeros' and data nodes' logs are copied beside it)."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from procs import FAST, ProcCluster, http_json
from support import until
from zero.pb import datanode_pb2 as dn
from zero.pb import zero_pb2, zero_pb2_grpc

from . import checkers, moves_checks
from .history import FAIL, OK, History
from .loopback import LoopbackCluster
from .moves_workload import (DataNodeProc, Monitor, Mover, MovesNemesis, Writer, _Stubs, channel, describe,
                             owner_named, put, state_of)
from .runner import Run
from .workloads import Mix, Workload

__all__ = ["MovesRig", "MovesRun", "run_moves", "moves_minimums", "MOVE_TIMEOUT", "SETTLE"]

# zero's --move-timeout: the longest a copy may keep a tablet read-only. A copy takes
# 0.4-0.8 s here; a paused data node (pause_datanode) stalls one for longer than this.
MOVE_TIMEOUT = 4.0
SETTLE = 30.0  # after the final restart: election, heartbeats, a move timeout, the data nodes' views
MIN_PUTS = 100  # acknowledged writes in a run (healthy 12 s runs: see docs/RELIABILITY.md, "Liveness")
READ_ONLY_LIMIT = 20.0  # one move's read-only span while faults go on: the move timeout plus failovers
BULK = 1 << 20  # a copy is one chunk per bulk value (and the rest), with --chunk-delay between


def rig_flags(rebalance: str = "0") -> tuple[str, ...]:
    """The flags of a MovesRig's zeros."""
    return (*FAST, "--rebalance-interval", rebalance, "--move-timeout", f"{MOVE_TIMEOUT:g}s")


class MovesRig:
    """Three zeros and one data node per group (1..groups), started; `close()` stops all."""

    def __init__(self, root: Path, *, groups: int = 3, rebalance: str = "0", chunk_delay: str = "150ms",
                 proxies: bool = False, seed: int = 0, cluster: LoopbackCluster | None = None,
                 host: str = "127.0.0.1") -> None:
        """proxies: the zeros' peer traffic goes through loopback.LoopbackCluster's proxy,
        so the nemesis can delay, stall and reset it (nemesis.PROXY_FAULTS). cluster: zeros
        made elsewhere (ns_txn_run's, in network namespaces); host: the data nodes' address."""
        self.root = root
        self.cluster = cluster or LoopbackCluster(
            root / "zeros", 3, pc=ProcCluster(root / "zeros", 3, flags=rig_flags(rebalance)), proxies=proxies,
            seed=seed)
        self.datanodes: list[DataNodeProc] = []
        self.groups = list(range(1, groups + 1))
        self.chunk_delay = chunk_delay
        self.host = host

    def start(self) -> MovesRig:
        self.cluster.start()
        addrs = self.cluster.addrs
        self.datanodes = [DataNodeProc(self.root / "dn", g, addrs, chunk_delay=self.chunk_delay, host=self.host)
                          for g in self.groups]
        for d in self.datanodes:
            d.start()
        self.wait_datanodes(30)
        return self

    def wait_datanodes(self, timeout: float) -> None:
        """Until the leader has heard every data node (it leads its group: one per group)."""
        def up() -> bool:
            for d in self.datanodes:
                d.check_alive()
            st = state_of(self.cluster.addrs)
            if st is None:
                return False
            return all(any(m.addr == d.addr and m.healthy for m in st.groups[d.group].members.values())
                       for d in self.datanodes if d.group in st.groups) and \
                all(d.group in st.groups for d in self.datanodes)
        until(up, timeout, message="every data node heartbeating", interval=0.1)

    def logs(self) -> list[Path]:
        return [z.log for z in self.cluster.nodes] + [d.log for d in self.datanodes]

    def close(self) -> None:
        for d in self.datanodes:
            d.cleanup()
        self.cluster.cleanup()


@dataclass
class MovesRun(Run):
    figures: dict[str, Any] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), **self.figures}

    def check(self) -> None:
        try:
            super().check()
        finally:
            if self.path:  # written: copy the processes' logs beside the history
                _copy_logs(Path(self.path), self.logs)


def _copy_logs(history: Path, logs: Sequence[Path]) -> None:
    d = history.with_suffix(".logs")
    d.mkdir(exist_ok=True)
    for p in logs:
        if p.exists():
            shutil.copy(p, d / p.name)
    print(f"logs copied to {d}")


def _prefill(rig: MovesRig, h: History, tablets: Sequence[str], home: dict[str, int]) -> None:
    """2, 3 or 4 bulk values per tablet (a copy of 2 to 4 chunks; the rebalancer finds
    tablets of the right size to even groups out), put at its home group's data node
    (the first write claims the tablet for that group); recorded like any write, so
    they are checked."""
    stubs = _Stubs(rig.datanodes)
    try:
        for i, t in enumerate(tablets):
            for j in range(2 + i % 3):
                value = bytes([(7 * i + j) % 251]) * BULK
                until(lambda: put(h, "setup", stubs.stubs[home[t]], home[t], t, f"bulk{j}", value,
                                  timeout=5)[0] == OK, 30, message=f"the bulk write {t}:bulk{j}", interval=0.1)
    finally:
        stubs.close()


def _admin_until_ok(addrs: Sequence[str], fn: Any, timeout: float) -> Any:
    """`fn(ZeroAdminStub)` on each zero in turn until one succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        for a in addrs:
            with channel(a) as ch:
                try:
                    return fn(zero_pb2_grpc.ZeroAdminStub(ch))
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
        time.sleep(0.1)


def _owners(st: zero_pb2.MembershipState, tablets: Sequence[str]) -> dict[str, list[int]]:
    return {t: sorted(g for g, grp in st.groups.items() if t in grp.tablets) for t in tablets}


def _active_moves(rig: MovesRig) -> dict[str, str | None]:
    """Each zero's active move, from its own applied state (/status.json); None: none."""
    out: dict[str, str | None] = {}
    for z in rig.cluster.nodes:
        code, body = http_json(z.http + "/status.json")
        if code != 200:
            out[z.name] = f"/status.json answered {code}"
        else:
            active = body["moves"]["active"]
            out[z.name] = json.dumps(active) if active else None
    return out


def _moves_started(rig: MovesRig) -> int:
    """The highest move id any zero knows (ids count every move started, from 1)."""
    top = 0
    for z in rig.cluster.nodes:
        code, body = http_json(z.http + "/status.json")
        if code == 200:
            ms = [body["moves"]["active"] or {}, *body["moves"]["recent"]]
            top = max([top, *(m.get("move_id", 0) for m in ms)])
    return top


def _settle(rig: MovesRig, h: History, tablets: Sequence[str], t0: float) -> tuple[
        dict[str, tuple[bool, float, str]], dict[str, str | None]]:
    """After the heal: wait (up to SETTLE) for no active move at any zero, then for a
    write to each tablet at its owner to be acknowledged."""
    deadline = t0 + SETTLE
    active = _active_moves(rig)
    while any(v is not None for v in active.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
        active = _active_moves(rig)
    probes: dict[str, tuple[bool, float, str]] = {}
    stubs = _Stubs(rig.datanodes)
    try:
        for t in tablets:
            n, err, ok = 0, "", False
            while not ok and time.monotonic() < deadline:
                st = state_of(rig.cluster.addrs)
                owner = next((g for g, grp in (st.groups.items() if st else ()) if t in grp.tablets), 0)
                if owner in stubs.stubs:
                    n += 1
                    typ, _, err = put(h, "probe", stubs.stubs[owner], owner, t, "probe", f"probe-{t}-{n}".encode())
                    ok = typ == OK
                else:
                    err = f"zero names owner {owner}" if st else "no zero answered GetState"
                if not ok:
                    time.sleep(0.1)
            probes[t] = (ok, time.monotonic() - t0, err)
    finally:
        stubs.close()
    return probes, active


def _read_back(rig: MovesRig, h: History, tablets: Sequence[str], owners: dict[str, list[int]]) -> tuple[
        dict[tuple[str, str], str | None], dict[str, dict[int, str]], list[str]]:
    """Every key any write named, read at the final owner; each tablet read at every
    other group (which must refuse naming the owner). Answers that only show a lagging
    view (a refusal naming another group, UNAVAILABLE) are retried for a while."""
    keys = sorted({(o.args["tablet"], o.args["key"]) for o in h.ops("put")})
    final: dict[tuple[str, str], str | None] = {}
    problems: list[str] = []
    refusals: dict[str, dict[int, str]] = {}
    stubs = _Stubs(rig.datanodes)
    deadline = time.monotonic() + 30 + len(keys) / 200

    def read(tk: tuple[str, str]) -> None:
        t, k = tk
        if len(owners.get(t, [])) != 1:
            return  # moves_checks.owners reports it
        g = owners[t][0]
        while True:
            try:
                r = stubs.stubs[g].Get(dn.GetRequest(tablet=t, key=k.encode()), timeout=2)
                final[(t, k)] = describe(r.value) if r.found else None
                return
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                problems.append(f"keys: {t}:{k} could not be read at its owner, group {g}: {last}")
                return
            time.sleep(0.1)

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(read, keys))
        for t in tablets:
            if len(owners.get(t, [])) != 1:
                continue
            g = owners[t][0]
            refusals[t] = {}
            for other in stubs.stubs:
                if other == g:
                    continue
                answer = ""
                end = time.monotonic() + 10
                while True:
                    try:
                        stubs.stubs[other].Get(dn.GetRequest(tablet=t, key=b"bulk0"), timeout=2)
                        answer = "served"
                    except grpc.RpcError as e:
                        code = e.code()  # type: ignore[attr-defined]
                        answer = (f"refused:{owner_named(e.details())}" if code == grpc.StatusCode.FAILED_PRECONDITION
                                  else f"{code.name}: {e.details()}")  # type: ignore[attr-defined]
                    if answer == f"refused:{g}" or time.monotonic() > end:
                        break
                    time.sleep(0.1)
                refusals[t][other] = answer
    finally:
        stubs.close()
    return final, refusals, problems


def moves_minimums(lease_clients: int) -> dict[str, int]:
    """checkers.liveness' minimums for a move run: the writers' acknowledged puts, at
    least one move the mover saw commit, and the lease workload's kinds (it runs with
    fewer clients, beside the data nodes, for 12 s: a quarter of the lease runs' minimums)."""
    return {"put": MIN_PUTS, "move committed": 1, **checkers.lease_minimums(Mix(), lease_clients, scale=0.5)}


def run_moves(rig: MovesRig, *, name: str, seed: int, duration: float, faults: Sequence[str],
              **kw: Any) -> MovesRun:
    """The run; if it breaks down before its checks (a cluster that never heals, say),
    the history and logs so far are written out and the AssertionError names them."""
    h = History(seed, name)
    try:
        return _run(rig, h, duration=duration, faults=faults, **kw)
    except Exception as e:
        path = h.dump()
        _copy_logs(path, rig.logs())
        raise AssertionError(f"the run (seed {seed}) broke down before its checks: {e!r}; "
                             f"full history in {path}") from e


def _run(rig: MovesRig, h: History, *, duration: float, faults: Sequence[str], writers: int = 3, tablets: int = 6,
         mover_gap: tuple[float, float] = (0.1, 0.6), lease_clients: int = 2, watchers: int = 1) -> MovesRun:
    t_start = time.monotonic()
    seed = h.seed
    names = [f"mv{i}" for i in range(tablets)]
    groups = rig.groups
    home = {t: groups[i % len(groups)] for i, t in enumerate(names)}
    h.meta.update(duration=duration, faults=list(faults), flags=rig.cluster.pc.flags, writers=writers, tablets=names,
                  zeros=rig.cluster.addrs, datanodes={d.name: d.addr for d in rig.datanodes})
    _prefill(rig, h, names, home)
    st = state_of(rig.cluster.addrs, timeout=3)
    assert st is not None
    route = {t: next(g for g, grp in st.groups.items() if t in grp.tablets) for t in names}

    rng = random.Random(seed)
    stop = threading.Event()
    mon_stop = threading.Event()
    monitor = Monitor(rig.cluster.addrs, h, mon_stop, tablets=names)
    ws = [Writer(i, rig.datanodes, names, route, h, random.Random(rng.random()), stop) for i in range(writers)]
    mover = Mover(rig.cluster.addrs, groups, names, h, random.Random(rng.random()), stop, gap=mover_gap)
    wl = Workload(rig.cluster.addrs, h, seed + 2, groups=groups, clients=lease_clients, watchers=watchers)
    nem = MovesNemesis(rig.cluster, h, seed + 1, duration=duration, faults=faults, datanodes=rig.datanodes,
                       monitor=monitor)
    for t in (monitor, *ws, mover):
        t.start()
    wl.start()
    nem.start()
    nem.join(duration + 120)
    stop.set()
    wl.stop_clients()
    for t in (*ws, mover):
        t.join(15)

    # Heal, then one more full restart (SPEC semantics 3); of the data nodes too when they
    # were faulted (their writes are on disk before they are acknowledged). The rebalancer
    # is switched off first: the final state must hold still while it is checked (a move
    # it started just before is finished or rolled back by the leader after the restart).
    rig.cluster.wait_ready(30)
    op = h.begin("nemesis", "rebalance_off")
    _admin_until_ok(rig.cluster.addrs, lambda a: a.SetRebalance(
        zero_pb2.SetRebalanceRequest(mode=zero_pb2.SetRebalanceRequest.OFF), timeout=3), 30)
    h.end(op, OK)
    op = h.begin("nemesis", "final_restart")
    rig.cluster.restart_all()
    restarted = ["zeros"]
    if any(f.endswith("_datanode") for f in faults):
        for d in rig.datanodes:
            d.kill9()
            d.start()
        restarted.append("datanodes")
    rig.cluster.wait_ready(30)
    h.end(op, OK, {"restarted": restarted})
    t_heal = time.monotonic()

    res = MovesRun(h, faults=nem.injected + 1, logs=rig.logs())
    if nem.error is not None:
        res.violations["nemesis"] = [f"the nemesis crashed: {nem.error!r}"]
    probes, active = _settle(rig, h, names, t_heal)
    for d in rig.datanodes:
        d.note_exit()
    res.violations["datanodes"] = [x for d in rig.datanodes for x in d.exits]
    res.violations["zeros"] = rig.cluster.unasked_exits()
    settled_in = max((s for _, s, _ in probes.values()), default=0.0)
    mon_stop.set()
    monitor.join(5)

    # The watchers must reach the current version before they stop (tests/fault/runner.py).
    st = rig.cluster.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(w.version == st.version for w in wl.watchers):
        time.sleep(0.1)
        st = rig.cluster.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    wl.stop_watchers()
    st = rig.cluster.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    h.meta["final_version"] = st.version
    owners = _owners(st, names)
    final, refusals, problems = _read_back(rig, h, names, owners)

    ops = h.ops()
    all_owners = {n: gid for gid, g in st.groups.items() for n in g.tablets}
    members = {mid: (gid, m.addr) for gid, g in st.groups.items() for mid, m in g.members.items()}
    lease_procs = {c.name for c in wl.clients}
    workload = lease_procs | {t.name for t in (*wl.watchers, *ws, mover)}
    res.violations.update(
        keys=moves_checks.keys(ops, final) + problems,
        writable=moves_checks.writable(probes, SETTLE, active),
        owners=moves_checks.owners(owners, refusals) + moves_checks.sampled_owners(ops),
        read_only=moves_checks.read_only_spans(ops, READ_ONLY_LIMIT),
        errors=moves_checks.put_errors(ops) + [
            f"unexpected definite error: {o.process}/{o.f} {o.args} -> {o.error}"
            for o in ops if o.type == FAIL and o.process in lease_procs],
        unique_ids=checkers.unique_ids(ops),
        timestamps=checkers.timestamps_realtime(ops),
        claims=checkers.claims([o for o in ops if o.f == "claim"], all_owners),
        membership=checkers.membership(ops, members),
        watchers=checkers.watchers(ops, st.version, [w.name for w in wl.watchers]),
        liveness=checkers.liveness([o for o in ops if o.process in workload], moves_minimums(lease_clients),
                                   watchers=[w.name for w in wl.watchers], faults=checkers.fault_windows(ops)),
    )
    moves = [o for o in ops if o.f == "move"]
    puts = [o for o in ops if o.f == "put"]
    leftovers = {d.name: [t for t in d.tablet_files() if t in owners and owners[t] != [d.group]]
                 for d in rig.datanodes}
    res.figures = {
        "moves_started": _moves_started(rig),  # by the mover and the rebalancer
        "mover_committed": sum(1 for o in moves if o.type == OK and o.value["committed"]),
        "mover_rolled_back": sum(1 for o in moves if o.type == OK and not o.value["committed"]),
        "mover_refused": sum(1 for o in moves if o.type == FAIL),
        "mover_indeterminate": sum(1 for o in moves if o.type not in (OK, FAIL)),
        "writes_acked": sum(1 for o in puts if o.type == OK),
        "writes_refused": sum(1 for o in puts if o.type == FAIL),
        "writes_indeterminate": sum(1 for o in puts if o.type not in (OK, FAIL)),
        "keys_checked": len(final),
        "settled_seconds": round(settled_in, 1),
        "datanode_faults": sum(1 for o in ops if o.f.endswith("_datanode") and o.type == OK),
        "leftover_copies": {k: v for k, v in leftovers.items() if v},
    }
    h.meta["figures"] = res.figures
    res.operations = sum(1 for o in ops if o.process not in ("nemesis", "monitor") and o.type == OK)
    res.seconds = time.monotonic() - t_start
    return res
