"""The nemesis: a seeded schedule of faults injected into a running cluster while the
workload runs. Every fault is one history op (process "nemesis"), from injection to heal,
so a failing history shows what was done when.

A fault always heals before the next one starts, and none takes more than a minority
down for long, so the cluster can make progress between faults; the full-cluster restart
is the exception, on purpose (SPEC semantics 3).

The nemesis talks to a `Target` (the cluster: its nodes, who leads, how to transfer
leadership), so the same schedule runs against loopback processes and namespaces.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .history import FAIL, OK, History

__all__ = ["Node", "Target", "Nemesis", "FAULTS"]


class Node(Protocol):
    name: str

    @property
    def running(self) -> bool: ...
    def kill9(self) -> None: ...
    def start(self, *extra: str) -> Any: ...
    def signal(self, sig: int) -> None: ...


class Target(Protocol):
    nodes: Sequence[Node]

    def leader(self, exclude: Sequence[Node] = ()) -> Node | None: ...
    def transfer(self, leader: Node, to: Node) -> bool: ...


FAULTS = ("kill9_random", "kill9_leader", "pause_random", "pause_leader", "restart_all", "transfer_storm")


class Nemesis(threading.Thread):
    def __init__(self, target: Target, history: History, seed: int, *, duration: float,
                 faults: Sequence[str] = FAULTS, hold: tuple[float, float] = (0.4, 1.5),
                 gap: tuple[float, float] = (0.5, 1.5)) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.t = target
        self.h = history
        self.rng = random.Random(seed)
        self.duration = duration
        self.faults = list(faults)
        self.hold, self.gap = hold, gap
        self.paused: set[Node] = set()
        self.injected = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            end = time.monotonic() + self.duration
            while time.monotonic() < end:
                time.sleep(self.rng.uniform(*self.gap))
                if time.monotonic() >= end:
                    break
                self.inject(self.rng.choice(self.faults))
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.error = e
        finally:
            self.heal()

    def _hold(self) -> None:
        time.sleep(self.rng.uniform(*self.hold))

    def _pick(self, leader: bool) -> Node | None:
        up = [n for n in self.t.nodes if n.running and n not in self.paused]
        if leader:
            return self.t.leader()
        return self.rng.choice(up) if up else None

    def inject(self, fault: str) -> None:
        op = self.h.begin("nemesis", fault)
        try:
            info = getattr(self, "_" + fault)()
        except Exception as e:  # noqa: BLE001 - a fault that could not be injected is not a bug
            self.h.end(op, FAIL, error=repr(e))
            self.heal()
            return
        self.injected += 1
        self.h.end(op, OK, info)

    # -- faults -----------------------------------------------------------------------------
    def _kill9_random(self, leader: bool = False) -> dict[str, Any]:
        n = self._pick(leader)
        if n is None:
            raise RuntimeError("no node to kill")
        n.kill9()
        self._hold()
        n.start()
        return {"node": n.name}

    def _kill9_leader(self) -> dict[str, Any]:
        return self._kill9_random(leader=True)

    def _pause_random(self, leader: bool = False) -> dict[str, Any]:
        n = self._pick(leader)
        if n is None:
            raise RuntimeError("no node to pause")
        self.paused.add(n)
        n.signal(signal.SIGSTOP)
        self._hold()
        n.signal(signal.SIGCONT)
        self.paused.discard(n)
        return {"node": n.name}

    def _pause_leader(self) -> dict[str, Any]:
        return self._pause_random(leader=True)

    def _restart_all(self) -> dict[str, Any]:
        how = []
        for n in self.t.nodes:
            if n.running:
                if self.rng.random() < 0.5:
                    n.kill9()
                    how.append(f"{n.name}:kill9")
                else:
                    n.signal(signal.SIGTERM)
                    how.append(f"{n.name}:term")
        deadline = time.monotonic() + 10
        while any(n.running for n in self.t.nodes) and time.monotonic() < deadline:
            time.sleep(0.02)
        for n in self.t.nodes:
            if n.running:
                n.kill9()
        self._hold()
        for n in self.t.nodes:
            n.start()
        return {"how": how}

    def _transfer_storm(self) -> dict[str, Any]:
        done = []
        for _ in range(self.rng.randint(2, 5)):
            lead = self.t.leader()
            if lead is None:
                time.sleep(0.2)
                continue
            others = [n for n in self.t.nodes if n is not lead and n.running]
            to = self.rng.choice(others)
            done.append((lead.name, to.name, self.t.transfer(lead, to)))
            time.sleep(self.rng.uniform(0.05, 0.3))
        return {"transfers": done}

    def heal(self) -> None:
        """Resume paused nodes and start stopped ones."""
        for n in list(self.paused):
            n.signal(signal.SIGCONT)
        self.paused.clear()
        for n in self.t.nodes:
            if not n.running:
                n.start()


def admin_cli(*args: str, prefix: Sequence[str] = (), timeout: float = 15.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`zero admin ...` as an operator would run it."""
    return subprocess.run([*prefix, sys.executable, "-m", "zero", "admin", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)
