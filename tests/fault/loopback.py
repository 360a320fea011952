"""The nemesis Target for `zero run` processes on 127.0.0.1 (tests/cluster/procs.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procs import FAST, ProcCluster, ZeroProc, write_until_ok

from .nemesis import admin_cli

__all__ = ["LoopbackCluster"]

# Rebalancer off: the claim checker expects no moves (moves are the move workload's).
FLAGS = (*FAST, "--rebalance-interval", "0")


class LoopbackCluster:
    def __init__(self, root: Path, n: int = 3, pc: ProcCluster | None = None) -> None:
        self.pc = pc or ProcCluster(root, n, flags=FLAGS)
        self.nodes: list[ZeroProc] = self.pc.zeros

    @property
    def addrs(self) -> list[str]:
        return self.pc.addrs

    def start(self) -> LoopbackCluster:
        self.pc.start()
        return self

    def leader(self, exclude: Any = ()) -> ZeroProc | None:
        best: tuple[int, ZeroProc] | None = None
        for z in self.nodes:
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
        self.pc.wait_leader(timeout)

    def restart_all(self) -> None:
        for z in self.nodes:
            z.kill9()
        for z in self.nodes:
            z.start()

    def cleanup(self) -> None:
        self.pc.cleanup()
