"""The nemesis: a seeded schedule of faults injected into a running cluster while the
workload runs. Every fault is one history op (process "nemesis"), from injection to heal,
so a failing history shows what was done when.

`pause_leader_long` pauses the leader for longer than the clients' 1 s deadline while
calls keep arriving at it: besides the clients' own (which time out), it sends calls of
every kind to the paused leader with a deadline that runs past its SIGCONT, a batch
every 0.3-0.5 s, each batch after a timestamp obtained from the rest of the cluster (a
"fence"); the answers the old leader gives once it runs again are recorded and checked
like any client's - a timestamp it hands out must exceed every fence obtained before
the call was sent (timestamps_realtime), ids must not repeat (unique_ids), an
acknowledged Connect must survive (membership).

A fault always heals before the next one starts, and none takes more than a minority
down for long, so the cluster can make progress between faults; the full-cluster restart
is the exception, on purpose (SPEC semantics 3).

The nemesis talks to a `Target` (the cluster: its nodes, who leads, how to transfer
leadership), so the same schedule runs against loopback processes and namespaces.
Two kinds of fault need more of the target:
    PROXY_FAULTS       a `net` (proxy.ProxyNet) that the zeros' peer traffic goes through:
                       delay with jitter, a stalled link, dropped connections
    MEMBERSHIP_FAULTS  `add_zero()` / `remove_zero(node)`: a zero added under load, then
                       one removed (sometimes the leader), back to the initial size
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

import grpc

from zero.pb import zero_pb2_grpc

from .history import FAIL, OK, History
from .workloads import RPC_TIMEOUT, QueuedCalls, outcome, request

__all__ = ["Node", "Target", "Nemesis", "FAULTS", "LONG_PAUSE_FAULTS", "PROXY_FAULTS", "MEMBERSHIP_FAULTS"]


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
LONG_PAUSE_FAULTS = ("pause_leader_long",)
# The kinds of call queued at a leader paused by pause_leader_long (timestamps twice:
# a stale answer from a deposed leader is the failure that matters most).
QUEUED_KINDS = ("ts", "ts", "uid", "claim", "connect")
PROXY_FAULTS = ("delay", "stall_link", "reset_links")
MEMBERSHIP_FAULTS = ("membership_change",)


class Nemesis(threading.Thread):
    def __init__(self, target: Target, history: History, seed: int, *, duration: float,
                 faults: Sequence[str] = FAULTS, hold: tuple[float, float] = (0.4, 1.5),
                 gap: tuple[float, float] = (0.5, 1.5), long_hold: tuple[float, float] = (2.0, 3.0),
                 after_cont: float = 3.0) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.t = target
        self.h = history
        self.rng = random.Random(seed)
        self.duration = duration
        self.faults = list(faults)
        self.hold, self.gap = hold, gap
        # pause_leader_long: how long (past the clients' RPC_TIMEOUT), and how long a
        # queued call may wait for its answer after the SIGCONT.
        self.long_hold, self.after_cont = long_hold, after_cont
        self.paused: set[Node] = set()
        self.size = len(target.nodes)  # membership changes end at this many zeros
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

    def _pause_leader_long(self) -> dict[str, Any]:
        n = self.t.leader()
        if n is None:
            raise RuntimeError("no leader to pause")
        addr = getattr(n, "addr", None)
        if addr is None:
            raise RuntimeError(f"{n.name} has no address to queue calls at")
        nodes = list(self.t.nodes)
        others = [(i, m) for i, m in enumerate(nodes) if m is not n and getattr(m, "addr", None)]
        process = f"queued{self.injected}"
        q = QueuedCalls(addr, self.h, self.rng, process=process, node=nodes.index(n))
        chans = {i: grpc.insecure_channel(m.addr) for i, m in others}
        fences = 0
        try:
            q.ready(3.0)
            hold = self.rng.uniform(*self.long_hold)
            self.paused.add(n)
            n.signal(signal.SIGSTOP)
            cont = time.monotonic() + hold
            while True:
                for f in self.rng.sample(QUEUED_KINDS, 3):
                    q.send(f, timeout=cont - time.monotonic() + self.after_cont)
                if time.monotonic() + 0.6 >= cont:
                    break
                time.sleep(self.rng.uniform(0.3, 0.5))
                fences += self._fence(chans, process, cont - 0.1)
            time.sleep(max(0.0, cont - time.monotonic()))
            n.signal(signal.SIGCONT)
            self.paused.discard(n)
            got = q.wait(self.after_cont + 2.0)
        finally:
            q.close()
            for ch in chans.values():
                ch.close()
        return {"node": n.name, "seconds": round(hold, 2), "queued": got, "fences": fences}

    def _fence(self, chans: dict[int, grpc.Channel], process: str, until: float) -> int:
        """A timestamp from a zero other than the paused one (any forwards to the new
        leader), recorded as a `ts` op; tried on each in turn until one answers or
        `until`. 1 if one did."""
        order = list(chans)
        self.rng.shuffle(order)
        k = 0
        while order and time.monotonic() + RPC_TIMEOUT / 2 < until:
            i = order[k % len(order)]
            k += 1
            op, method, req, conv = request(self.h, process + "-fence", "ts", self.rng, node=i, groups=(),
                                            tablets=1, connect_addr="")
            try:
                r = getattr(zero_pb2_grpc.ZeroStub(chans[i]), method)(
                    req, timeout=min(RPC_TIMEOUT, max(0.05, until - time.monotonic())))
            except grpc.RpcError as e:
                self.h.end(op, *outcome(e))
                time.sleep(0.05)
                continue
            self.h.end(op, OK, conv(r))
            return 1
        return 0

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

    # -- through the proxy (PROXY_FAULTS) -----------------------------------------------------------
    def _net(self) -> Any:
        net = getattr(self.t, "net", None)
        if net is None or not getattr(self.t, "proxies", False):
            raise RuntimeError("this target's peers do not talk through a proxy")
        return net

    def _link(self) -> tuple[str, str]:
        """Two zeros; half of the time one is the leader (two followers barely talk)."""
        names = [n.name for n in self.t.nodes]
        a, b = self.rng.sample(names, 2)
        if self.rng.random() < 0.5:
            lead = self.t.leader()
            if lead is not None:
                a, b = lead.name, self.rng.choice([x for x in names if x != lead.name])
                if self.rng.random() < 0.5:
                    a, b = b, a
        return a, b

    def _delay(self) -> dict[str, Any]:
        """20-200 ms (+- up to half of it) on every link, clients' included, or on one
        link (one or both directions), for 1-3 s."""
        net = self._net()
        ms = self.rng.uniform(20, 200)
        jitter = self.rng.uniform(0, ms / 2)
        r = self.rng.random()
        if r < 0.5:
            net.delay(ms, jitter)
            where = "all"
        else:
            a, b = self._link()
            net.delay(ms, jitter, a, b)
            if r < 0.75:
                net.delay(ms, jitter, b, a)
                where = f"{a}<->{b}"
            else:
                where = f"{a}->{b}"
        time.sleep(self.rng.uniform(1.0, 3.0))
        net.heal()
        return {"links": where, "ms": round(ms), "jitter_ms": round(jitter)}

    def _stall_link(self) -> dict[str, Any]:
        """One link (one or both directions) holds everything it carries for a while."""
        net = self._net()
        a, b = self._link()
        net.stall(a, b)
        both = self.rng.random() < 0.5
        if both:
            net.stall(b, a)
        self._hold()
        net.heal()
        return {"link": f"{a}{'<->' if both else '->'}{b}"}

    def _reset_links(self) -> dict[str, Any]:
        """Drop every proxied connection (or one zero's) 1-3 times; they reconnect."""
        net = self._net()
        who = "*" if self.rng.random() < 0.5 else self.rng.choice([n.name for n in self.t.nodes])
        dropped = []
        for _ in range(self.rng.randint(1, 3)):
            dropped.append(net.reset(who) if who != "*" else net.reset())
            time.sleep(self.rng.uniform(0.1, 0.5))
        return {"node": who, "dropped": dropped}

    # -- membership (MEMBERSHIP_FAULTS) ----------------------------------------------------------
    def _membership_change(self) -> dict[str, Any]:
        """Add a zero (unless an earlier change left one too many), then remove one:
        the leader with probability 0.4, else another voter; back to `size` zeros."""
        t: Any = self.t
        if not hasattr(t, "add_zero"):
            raise RuntimeError("this target cannot add or remove zeros")
        info: dict[str, Any] = {}
        new = None
        if len(t.nodes) <= self.size:
            new = t.add_zero()
            info.update(added=new.name, added_id=new.raft_id)
        lead = t.leader()
        if lead is not None and lead is not new and self.rng.random() < 0.4:
            victim = lead
        else:
            victim = self.rng.choice([n for n in t.nodes if n is not new])
        info["leader"] = victim is lead
        info.update(t.remove_zero(victim))
        return info

    def heal(self) -> None:
        """Heal the proxy, resume paused nodes and start stopped ones."""
        net = getattr(self.t, "net", None)
        if net is not None:
            net.heal()
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
