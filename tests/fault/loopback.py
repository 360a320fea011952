"""The nemesis Target for `zero run` processes on 127.0.0.1 (tests/cluster/procs.py).

Options beyond the plain cluster:
    proxies=True  each zero advertises (`--my`) a proxy listener in front of its gRPC port
                  (proxy.py), so all peer traffic can be delayed, stalled or reset
    front=True    the clients reach the cluster through stable "front" addresses, one per
                  initial zero, each forwarding to a current member; a membership change
                  retargets them, as a service address would follow the members
Membership: `add_zero()` starts a new zero with `--peer` and waits until it is a voter;
`remove_zero(z)` removes one with `zero admin remove-node --group 0` and waits for it to
exit by itself (a removed zero is told so and stops). `nodes` is always the current
members, so the other faults and the final restart address them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from procs import FAST, ProcCluster, ZeroProc, write_until_ok
from support import until
from zero.pb import zero_pb2

from .nemesis import admin_cli
from .proxy import ProxyNet

__all__ = ["LoopbackCluster"]

# Rebalancer off: the claim checker expects no moves (moves are the move workload's).
FLAGS = (*FAST, "--rebalance-interval", "0")


class LoopbackCluster:
    def __init__(self, root: Path, n: int = 3, pc: ProcCluster | None = None, *, proxies: bool = False,
                 front: bool = False, seed: int = 0) -> None:
        self.pc = pc or ProcCluster(root, n, flags=FLAGS)
        self.nodes: list[ZeroProc] = self.pc.zeros
        self.retired: list[ZeroProc] = []  # removed (or failed to join): never restarted
        self.removals: list[dict[str, Any]] = []
        self._next = len(self.nodes) + 1
        self.proxies = proxies
        self.net: ProxyNet | None = ProxyNet(owners=self._pids, seed=seed) if (proxies or front) else None
        self._fronts: list[str] = []
        if self.net is not None:
            if proxies:
                for z in self.nodes:
                    self._proxy(z)
            if front:
                for i, z in enumerate(self.nodes):
                    name = f"front{i}"
                    self.net.listen(name, z.addr, identify=False)
                    self._fronts.append(name)

    def _pids(self) -> dict[int, str]:
        return {z.proc.pid: z.name for z in [*self.nodes, *self.retired] if z.proc is not None}

    def _proxy(self, z: ZeroProc) -> None:
        assert self.net is not None
        z.advertise = self.net.listen(z.name, z.addr)

    @property
    def addrs(self) -> list[str]:
        if self._fronts:
            assert self.net is not None
            return [self.net.addrs[f] for f in self._fronts]
        return self.pc.addrs

    def start(self) -> LoopbackCluster:
        self.pc.start()
        return self

    def leader(self, exclude: Any = ()) -> ZeroProc | None:
        best: tuple[int, ZeroProc] | None = None
        for z in list(self.nodes):
            if not z.running or z in exclude:
                continue
            st = z.status(timeout=0.3)
            if st is not None and st.role == "LEADER" and (best is None or st.term > best[0]):
                best = (st.term, z)
        return best[1] if best else None

    def transfer(self, leader: ZeroProc, to: ZeroProc) -> bool:
        p = admin_cli("transfer-leader", "--addr", leader.addr, "--to", str(to.raft_id), "--timeout", "3")
        return p.returncode == 0

    def call(self, fn: Callable[[Any], Any], timeout: float) -> Any:
        return write_until_ok(self.addrs, fn, timeout)

    def wait_ready(self, timeout: float) -> None:
        for z in self.nodes:
            if not z.running:
                z.start()
        try:
            self.pc.wait_leader(timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What each zero says about itself, its log's tail, and the proxy's connections."""
        out = []
        for z in self.nodes:
            code, body = z.health() if z.running else (0, {})
            out.append(f"--- {z.name} (pid {z.proc.pid if z.proc else '-'}, running {z.running}, "
                       f"--my {z.advertise or z.addr}): /health {code} {body}\n{z.log_tail(3000)}")
        if self.net is not None:
            out.append(f"--- proxy: {dict(self.net.stats)}; open connections {sorted(self.net.connections())}")
        return "\n".join(out)

    def restart_all(self) -> None:
        for z in self.nodes:
            z.kill9()
        for z in self.nodes:
            z.start()

    # -- membership ------------------------------------------------------------------------------
    def _is_voter(self, rid: int) -> bool:
        lead = self.leader()
        st = lead.status(timeout=0.5) if lead is not None else None
        return st is not None and rid in st.progress and not st.progress[rid].learner

    def add_zero(self, timeout: float = 30.0) -> ZeroProc:
        """Start a new zero joining through a running member; return it once it is a voter."""
        name = f"z{self._next}"
        self._next += 1
        z = ZeroProc(self.pc.root / name, name, flags=self.pc.flags)
        if self.proxies:
            self._proxy(z)
        via = next(n for n in self.nodes if n.running)
        z.start("--peer", via.addr)
        try:
            z.wait_healthy(timeout)
            until(lambda: self._is_voter(z.raft_id), timeout, message=f"{name} (raft id {z.raft_id}) to become a voter",
                  interval=0.05)
        except BaseException:
            self._abandon(z)
            raise
        self.nodes.append(z)
        self._retarget_fronts()
        return z

    def _abandon(self, z: ZeroProc) -> None:
        """A joiner that did not make it: stop it, and take it out of the configuration
        if it got in (as a learner it holds up nothing, but it should not linger)."""
        z.kill9()
        self.retired.append(z)
        mine = z.advertise or z.addr
        try:
            st = self.call(lambda s: s.GetState(zero_pb2.GetStateRequest(), timeout=2), 10)
            rid = next((i for i, m in st.zeros.items() if m.addr == mine), 0)
            if rid:
                self._remove_node(rid, timeout=15)
        except (AssertionError, RuntimeError, grpc.RpcError, subprocess.TimeoutExpired):
            pass
        if self.net is not None and self.proxies:
            self.net.remove(z.name)

    def _remove_node(self, rid: int, timeout: float) -> str:
        """`zero admin remove-node --group 0` through a running member until it is done."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            live = [n for n in self.nodes if n.running and n.raft_id != rid] or [n for n in self.nodes if n.running]
            if live:
                via = live[int(time.monotonic() * 1000) % len(live)]
                try:
                    p = admin_cli("remove-node", "--addr", via.addr, "--id", str(rid), "--group", "0",
                                  "--timeout", "5", timeout=20)
                    if p.returncode == 0:
                        return p.stdout.strip()
                    last = p.stderr.strip()
                    if "already removed" in last:  # an earlier attempt whose answer was lost
                        return last
                except subprocess.TimeoutExpired:
                    last = "zero admin remove-node timed out"
            if time.monotonic() > deadline:
                raise RuntimeError(f"remove-node {rid} did not succeed within {timeout}s: {last}")
            time.sleep(0.3)

    def remove_zero(self, z: ZeroProc, timeout: float = 30.0, exit_timeout: float = 15.0) -> dict[str, Any]:
        """Remove member `z` and wait for its process to exit by itself."""
        t0 = time.monotonic()
        out = self._remove_node(z.raft_id, timeout)
        took = time.monotonic() - t0
        assert z.proc is not None
        try:
            code: int | None = z.proc.wait(exit_timeout)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            z.kill9()
        self.nodes.remove(z)
        self.retired.append(z)
        if self.net is not None and self.proxies:
            self.net.remove(z.name)
        self._retarget_fronts()
        info = {"removed": z.name, "raft_id": z.raft_id, "remove_s": round(took, 2), "exit_code": code,
                "exited_by_itself": code is not None, "answer": out[:200]}
        self.removals.append(info)
        return info

    def unasked_exits(self) -> list[str]:
        """Members whose process ended with nobody asking (ZeroProc.note_exit): a crash,
        an exit of its own, a kill from outside the run. Removed zeros exit by design."""
        for z in self.nodes:
            z.note_exit()
        return [x for z in self.nodes for x in z.exits]

    def _retarget_fronts(self) -> None:
        if self.net is None or not self._fronts:
            return
        for i, f in enumerate(self._fronts):
            self.net.retarget(f, self.nodes[i % len(self.nodes)].addr)

    def cleanup(self) -> None:
        self.pc.cleanup()
        for z in self.retired:
            z.cleanup()
        if self.net is not None:
            self.net.close()
