"""kill -9 of the leader, the same way for zero and etcd (bench/run.py).

Each trial: `WRITERS` threads write continuously, each with its own channel to one
member, a per-call deadline of `DEADLINE` s, and on any error a switch to the next member
after a 20 ms pause (no back-off beyond that, the same for both systems); after 1 s of
writes the leader gets SIGKILL; the figure is the time from the kill to the first write
that was *sent after the kill* and acknowledged. Then the killed member is restarted on
its data dir and the cluster settles (one leader known to all) before the next trial."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from support import free_ports, until  # noqa: E402

from bench.peers.load import METHODS, request  # noqa: E402

WRITERS = 4
DEADLINE = 0.3
__all__ = ["free_ports", "until", "Writers", "trials"]


class Writers:
    def __init__(self, addrs: list[str], op: str, tag: str) -> None:
        self.addrs, self.op, self.tag = addrs, op, tag
        self.acks: list[tuple[float, float]] = []  # (sent, acknowledged), monotonic
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(WRITERS)]

    def _loop(self, i: int) -> None:
        idx, seq = i % len(self.addrs), 0
        chans: dict[str, grpc.Channel] = {}
        try:
            while not self.stopped.is_set():
                addr = self.addrs[idx]
                if addr not in chans:
                    chans[addr] = grpc.insecure_channel(addr)
                call = chans[addr].unary_unary(METHODS[self.op])
                seq += 1
                t0 = time.monotonic()
                try:
                    call(request(self.op, seq, f"{self.tag}w{i}"), timeout=DEADLINE)
                    self.acks.append((t0, time.monotonic()))
                except grpc.RpcError:
                    idx = (idx + 1) % len(self.addrs)
                    time.sleep(0.02)
        finally:
            for c in chans.values():
                c.close()

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(5)


def trials(n: int, addrs: list[str], op: str, settle: Callable[[], Any], kill: Callable[[Any], None],
           restart: Callable[[Any], None], log: Callable[[str], None], name: str) -> list[float]:
    """`settle()` returns the leader once all agree; `kill(leader)`; `restart(leader)`."""
    out: list[float] = []
    for k in range(n):
        lead = settle()
        with Writers(addrs, op, f"{name}{k}t{time.time_ns() % 10**8}") as w:
            time.sleep(1.0)
            t_kill = time.monotonic()
            kill(lead)
            deadline = t_kill + 20
            while time.monotonic() < deadline and not any(s > t_kill for s, _ in w.acks):
                time.sleep(0.005)
        after = [a for s, a in w.acks if s > t_kill]
        restart(lead)
        if not after:
            log(f"    {name} trial {k + 1}: no write acknowledged within 20 s of the kill")
            out.append(float("inf"))
            continue
        out.append(min(after) - t_kill)
        log(f"    {name} trial {k + 1}: first ack {out[-1] * 1e3:.0f} ms after the kill")
    return out


def summary(xs: list[float]) -> str:
    ok = sorted(x for x in xs if x != float("inf"))
    if not ok:
        return "no trial recovered"
    lost = len(xs) - len(ok)
    return (f"median {statistics.median(ok) * 1e3:,.0f} ms, {ok[0] * 1e3:,.0f}–{ok[-1] * 1e3:,.0f} ms "
            f"({len(xs)} trials{f', {lost} not recovered' if lost else ''})")
