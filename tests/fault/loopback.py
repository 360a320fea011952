"""The nemesis Target for `zero run` processes on 127.0.0.1 (tests/cluster/procs.py).

Options beyond the plain cluster:
    proxies=True  each zero advertises (`--my`) a proxy listener in front of its gRPC port
                  (proxy.py), so all peer traffic can be delayed, stalled or reset
    front=True    the clients reach the cluster through stable "front" addresses, one per
                  initial zero, each forwarding to a current member
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from procs import FAST, ProcCluster, ZeroProc, write_until_ok

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
        self.retired: list[ZeroProc] = []  # no longer members: never restarted
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
