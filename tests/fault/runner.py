"""One seeded, bounded fault run: set up groups, run the workload under the nemesis, heal,
restart the whole cluster, read the final state, let the watchers catch up, check.

`Run.check()` raises AssertionError naming every violation and the file the full history
was written to."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from zero.pb import zero_pb2

from . import checkers
from .history import FAIL, INFO, OK, History
from .nemesis import FAULTS, Nemesis, Target
from .workloads import Mix, Workload

__all__ = ["Cluster", "Run", "run", "pytest_timeout"]


def pytest_timeout(duration: float, overhead: float = 150.0) -> float:
    """A pytest timeout for a nemesis run of `duration` seconds, or of the soak's length
    when one is asked for (`--soak SECONDS` on the command line, else ZERO_FAULT_SOAK, as
    conftest's soak_seconds fixture reads them): timeout marks are evaluated at import,
    before any fixture exists."""
    soak = None
    for i, a in enumerate(sys.argv):
        if a == "--soak" and i + 1 < len(sys.argv):
            soak = sys.argv[i + 1]
        elif a.startswith("--soak="):
            soak = a.split("=", 1)[1]
    try:
        seconds = float(soak or os.environ.get("ZERO_FAULT_SOAK") or duration)
    except ValueError:
        seconds = duration
    return seconds + overhead


class Cluster(Target, Protocol):
    addrs: Sequence[str]

    def call(self, fn: Callable[[Any], Any], timeout: float) -> Any: ...   # fn(ZeroStub), retried
    def wait_ready(self, timeout: float) -> None: ...
    def restart_all(self) -> None: ...
    def unasked_exits(self) -> list[str]: ...   # members that ended with nobody asking


@dataclass
class Run:
    history: History
    violations: dict[str, list[str]] = field(default_factory=dict)
    faults: int = 0
    operations: int = 0
    seconds: float = 0.0
    path: str = ""

    def summary(self) -> dict[str, Any]:
        out = {"name": self.history.name, "seed": self.history.seed, "seconds": round(self.seconds, 1),
               "faults": self.faults, "operations": self.operations,
               "violations": sum(len(v) for v in self.violations.values()), "counts": self.history.counts()}
        queued = [o for o in self.history.ops() if o.process.startswith("queued") and "-fence" not in o.process]
        if queued:  # calls sent to a leader paused past their deadline (nemesis pause_leader_long)
            out["queued"] = {t: sum(1 for o in queued if o.type == t) for t in (OK, FAIL, INFO)}
        return out

    def check(self) -> None:
        summary = self.summary()
        out = os.environ.get("ZERO_FAULT_SUMMARY")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(summary) + "\n")
        print("fault run:", json.dumps(summary))
        bad = {k: v for k, v in self.violations.items() if v}
        if bad or os.environ.get("ZERO_FAULT_KEEP_HISTORY"):
            self.path = str(self.history.dump())
            print(f"full history written to {self.path}")
        if bad:
            lines = [f"{k}: {x}" for k, v in bad.items() for x in v[:10]]
            raise AssertionError(f"{summary['violations']} violations (seed {self.history.seed}); full history "
                                 f"in {self.path}\n" + "\n".join(lines))


def _setup_groups(c: Cluster, h: History, n: int) -> list[int]:
    groups = []
    for i in range(n):
        addr = f"setup-{i}:7080"
        op = h.begin("setup", "connect", addr=addr)
        r = c.call(lambda s: s.Connect(zero_pb2.ConnectRequest(addr=addr), timeout=2), 30)
        h.end(op, OK, {"id": r.member.id, "group": r.member.group_id})
        groups.append(r.member.group_id)
    return sorted(set(groups))


def run(c: Cluster, *, name: str, seed: int, duration: float, faults: Sequence[str] = FAULTS,
        clients: int = 4, watchers: int = 2, mix: Mix = Mix(), final_restart: bool = True,
        nemesis: Any = None, minimums: Mapping[str, int] | None = None) -> Run:
    """`nemesis`, when given, is a callable (target, history, seed, duration) -> Nemesis-like
    thread with `.injected`, `.error`; the default is Nemesis with `faults`. `minimums`:
    the least ok answers per kind of call (checkers.liveness; default
    checkers.lease_minimums for `mix` and `clients`): fewer is a violation, as is a kind
    whose calls mostly ended indeterminate or a watcher that recorded (almost) nothing."""
    t0 = time.monotonic()
    h = History(seed, name)
    h.meta.update(duration=duration, faults=list(faults), clients=clients, watchers=watchers)
    groups = _setup_groups(c, h, 3)
    wl = Workload(c.addrs, h, seed, groups=groups, clients=clients, watchers=watchers, mix=mix)
    nem = (nemesis or (lambda t, hh, s, d: Nemesis(t, hh, s, duration=d, faults=faults)))(c, h, seed + 1, duration)
    wl.start()
    nem.start()
    nem.join(duration + 120)
    wl.stop_clients()
    c.wait_ready(30)
    if final_restart:
        op = h.begin("nemesis", "final_restart")
        c.restart_all()
        c.wait_ready(30)
        h.end(op, OK)
    res = Run(h, faults=nem.injected + int(final_restart))
    if nem.error is not None:
        res.violations["nemesis"] = [f"the nemesis crashed: {nem.error!r}"]

    state = c.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    # Watchers: wait until each has reached the current version (which may still move
    # while a new leader commits its first entries), then stop them.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = c.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
        if all(w.version == state.version for w in wl.watchers):
            break
        time.sleep(0.1)
    wl.stop_watchers()
    state = c.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=3), 30)
    h.meta["final_version"] = state.version

    ops = h.ops()
    owners = {name: gid for gid, g in state.groups.items() for name in g.tablets}
    members = {mid: (gid, m.addr) for gid, g in state.groups.items() for mid, m in g.members.items()}
    workload = {t.name for t in (*wl.clients, *wl.watchers)}
    if minimums is None:
        minimums = checkers.lease_minimums(mix, clients)
    res.violations.update(
        unique_ids=checkers.unique_ids(ops),
        timestamps=checkers.timestamps_realtime(ops),
        claims=checkers.claims(ops, owners),
        membership=checkers.membership(ops, members),
        watchers=checkers.watchers(ops, state.version, [w.name for w in wl.watchers]),
        liveness=checkers.liveness([o for o in ops if o.process in workload], minimums,
                                   watchers=[w.name for w in wl.watchers], faults=checkers.fault_windows(ops))
        + checkers.queued_answers(ops),
        errors=[f"unexpected definite error: {o.process}/{o.f} {o.args} -> {o.error}"
                for o in ops if o.type == FAIL and o.process != "nemesis"],
        zeros=c.unasked_exits(),
    )
    if state.max_txn_ts < max((o.value["end"] for o in ops if o.f == "ts" and o.type == OK), default=0):
        res.violations["timestamps"].append(f"final max_txn_ts {state.max_txn_ts} is below a handed-out timestamp")
    if state.max_uid < max((o.value["end"] for o in ops if o.f == "uid" and o.type == OK), default=0):
        res.violations["unique_ids"].append(f"final max_uid {state.max_uid} is below a handed-out uid")
    res.operations = sum(1 for o in ops if o.process != "nemesis" and o.type == OK)
    res.seconds = time.monotonic() - t0
    return res
