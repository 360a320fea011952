"""The move workload: reference data nodes (`zero datanode --data-dir`, durable, so they
can be killed with -9 and restarted), writers that put keys into tablets through them,
a mover that keeps moving tablets between groups with the MoveTablet admin RPC, a
monitor that samples the shard map, and a nemesis that can also kill -9 or pause a data
node (mid-move, when it catches one). Every call is one history op.

Writers route as a data-node client would: to the group zero's shard map names, and on
FAILED_PRECONDITION to the group the refusal names ("moved to group N", "served by
group N"); a refusal for a read-only tablet is retried later. Each key is written by one
writer, one call at a time, with a value no other write carries, so moves_checks.keys
can tell which write the final value came from.
"""

from __future__ import annotations

import hashlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from procs import REPO, clean_env
from support import free_port
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import zero_pb2, zero_pb2_grpc

from .history import FAIL, INFO, OK, History
from .nemesis import Nemesis

__all__ = ["channel", "DataNodeProc", "Writer", "Mover", "Monitor", "MovesNemesis", "describe", "owner_named",
           "state_of", "RPC_TIMEOUT"]

RPC_TIMEOUT = 1.0
MOVE_TIMEOUT = 12.0  # the mover's deadline for one MoveTablet call (the move itself runs on)
_OWNER = re.compile(r"(?:moved to|served by|owner is) group (\d+)")
# gRPC backs off up to 2 minutes between attempts to reach an address that refused; a
# restarted zero or data node must be reached again within a fraction of a second.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


def channel(addr: str) -> grpc.Channel:
    return grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)


def describe(value: bytes) -> str:
    """How a value appears in the history: itself when short, else a digest."""
    if len(value) <= 64:
        return value.decode("ascii", "backslashreplace")
    return f"sha1:{hashlib.sha1(value).hexdigest()[:16]}:{len(value)}"


def owner_named(details: str) -> int:
    """The owner a data node's FAILED_PRECONDITION names; 0 when it names none."""
    m = _OWNER.search(details or "")
    return int(m.group(1)) if m else 0


def _err(e: grpc.RpcError) -> tuple[str, grpc.StatusCode | None]:
    code = e.code() if hasattr(e, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {e.details() if hasattr(e, 'details') else e}", code


def state_of(addrs: Sequence[str], timeout: float = 1.0) -> zero_pb2.MembershipState | None:
    """GetState from the first zero that answers (followers forward it to the leader)."""
    for a in addrs:
        with channel(a) as ch:
            try:
                return zero_pb2_grpc.ZeroStub(ch).GetState(zero_pb2.GetStateRequest(), timeout=timeout)
            except grpc.RpcError:
                continue
    return None


class DataNodeProc:
    """One `zero datanode` child with a data dir; its address and data dir survive
    restarts (so zero's Connect returns the same member), its log is appended to."""

    def __init__(self, root: Path, group: int, zeros: Sequence[str], *, chunk_delay: str = "0",
                 host: str = "127.0.0.1") -> None:
        self.group = group
        self.name = f"dn{group}"
        self.addr = f"{host}:{free_port()}"
        self.data_dir = root / self.name
        self.log = root / f"{self.name}.log"
        self.args = [sys.executable, "-m", "zero", "datanode", "--zero", ",".join(zeros), "--addr", self.addr,
                     "--group", str(group), "--data-dir", str(self.data_dir), "--size-interval", "300ms",
                     "--chunk-delay", chunk_delay, "--log-format", "json"]
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None
        self.restarts = 0
        self.exits: list[str] = []  # exits nobody asked for (note_exit)
        self._noted: set[subprocess.Popen[bytes]] = set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *extra: str) -> DataNodeProc:
        assert not self.running, f"{self.name} is already running"
        self.note_exit()
        if self._out is not None:
            self._out.close()
            self.restarts += 1
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "a")
        self._out.write(f"--- start: {' '.join(self.args[2:])}\n")
        self._out.flush()
        self.proc = subprocess.Popen([*self.args, *extra], cwd=REPO, env=clean_env(), stdout=self._out,
                                     stderr=subprocess.STDOUT)
        return self

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def note_exit(self) -> None:
        """Record an exit nobody asked for (not kill -9 or SIGTERM) in `exits`."""
        if self.proc is not None and self.proc.returncode not in (None, -signal.SIGKILL, -signal.SIGTERM) \
                and self.proc not in self._noted:
            self._noted.add(self.proc)
            tail = self.log.read_text(errors="replace")[-600:] if self.log.exists() else ""
            self.exits.append(f"{self.name} exited with {self.proc.returncode}: ...{tail}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def tablet_files(self) -> list[str]:
        """Tablets this node keeps on disk (a dropped copy is gone; a failed drop leaves one)."""
        d = self.data_dir / "tablets"
        return sorted(bytes.fromhex(p.stem).decode() for p in d.glob("*.log")) if d.exists() else []

    def cleanup(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None


class _Stubs:
    """A DataNodeStub per group over one channel per address (gRPC reconnects by itself
    after a data node restarts on the same address)."""

    def __init__(self, nodes: Sequence[DataNodeProc]) -> None:
        self._chans = {n.group: channel(n.addr) for n in nodes}
        self.stubs = {g: dng.DataNodeStub(ch) for g, ch in self._chans.items()}

    def close(self) -> None:
        for ch in self._chans.values():
            ch.close()


def put(h: History, process: str, stub: dng.DataNodeStub, group: int, tablet: str, key: str, value: bytes,
        timeout: float = RPC_TIMEOUT) -> tuple[str, grpc.StatusCode | None, str]:
    """One recorded Put: (type, code, details)."""
    op = h.begin(process, "put", tablet=tablet, key=key, value=describe(value), group=group)
    try:
        stub.Put(dn.PutRequest(tablet=tablet, key=key.encode(), value=value), timeout=timeout)
    except grpc.RpcError as e:
        err, code = _err(e)
        # FAILED_PRECONDITION is a refusal before anything is stored: the write did not happen.
        typ = FAIL if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT) else INFO
        h.end(op, typ, error=err)
        return typ, code, err
    h.end(op, OK)
    return OK, grpc.StatusCode.OK, ""


class Writer(threading.Thread):
    """Puts its own keys into random tablets, routed by zero's shard map and the data
    nodes' refusals."""

    def __init__(self, index: int, nodes: Sequence[DataNodeProc], tablets: Sequence[str], route: dict[str, int],
                 history: History, rng: random.Random, stop: threading.Event, *, keys: int = 8) -> None:
        super().__init__(name=f"writer{index}", daemon=True)
        self.index = index
        self.stubs = _Stubs(nodes)
        self.tablets = list(tablets)
        self.route = dict(route)
        self.h = history
        self.rng = rng
        self.stop_event = stop
        self.keys = keys
        self.seq = 0
        self.acked = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
        finally:
            self.stubs.close()

    def step(self) -> None:
        tablet = self.rng.choice(self.tablets)
        self.seq += 1
        # Half the writes overwrite one of a few keys (the final value must be the last
        # acknowledged one), half write a key of their own (every one must be found).
        key = (f"w{self.index}-k{self.rng.randrange(self.keys)}" if self.rng.random() < 0.5
               else f"w{self.index}-n{self.seq}")
        value = f"w{self.index}-s{self.seq}".encode()
        group = self.route[tablet]
        typ, code, err = put(self.h, self.name, self.stubs.stubs[group], group, tablet, key, value)
        if typ == OK:
            self.acked += 1
            time.sleep(0.01 * self.rng.random())
            return
        named = owner_named(err) if code == grpc.StatusCode.FAILED_PRECONDITION else 0
        if named and named != group and named in self.stubs.stubs:
            self.route[tablet] = named  # the refusal names the owner: go there next time
        else:
            # Read-only while moving, or the node (or zero) is away: retry later.
            time.sleep(0.03 + 0.05 * self.rng.random())


class Mover(threading.Thread):
    """Moves a random tablet to a random other group, again and again, through MoveTablet
    on a random zero (a follower forwards it to the leader)."""

    def __init__(self, zeros: Sequence[str], groups: Sequence[int], tablets: Sequence[str], history: History,
                 rng: random.Random, stop: threading.Event, *, gap: tuple[float, float] = (0.1, 0.6)) -> None:
        super().__init__(name="mover", daemon=True)
        self.zeros = list(zeros)
        self.groups = list(groups)
        self.tablets = list(tablets)
        self.h = history
        self.rng = rng
        self.stop_event = stop
        self.gap = gap
        self.committed = self.rolled_back = 0

    def run(self) -> None:
        chans = [channel(a) for a in self.zeros]
        try:
            while not self.stop_event.wait(self.rng.uniform(*self.gap)):
                self.step(chans)
        finally:
            for ch in chans:
                ch.close()

    def step(self, chans: list[grpc.Channel]) -> None:
        i = self.rng.randrange(len(chans))
        tablet = self.rng.choice(self.tablets)
        try:
            st = zero_pb2_grpc.ZeroStub(chans[i]).GetState(zero_pb2.GetStateRequest(), timeout=RPC_TIMEOUT)
        except grpc.RpcError:
            return
        src = next((g for g, grp in st.groups.items() if tablet in grp.tablets), 0)
        dst = self.rng.choice([g for g in self.groups if g != src])
        op = self.h.begin(self.name, "move", tablet=tablet, src=src, dst=dst, node=i)
        fut = zero_pb2_grpc.ZeroAdminStub(chans[i]).MoveTablet.future(
            zero_pb2.MoveTabletRequest(predicate=tablet, dst_group=dst), timeout=MOVE_TIMEOUT)
        while not fut.done() and not self.stop_event.wait(0.05):
            pass
        if not fut.done():
            fut.cancel()  # the run is over; the move runs on at the leader (moves are not cancelled)
        try:
            r = fut.result()
        except grpc.FutureCancelledError:
            self.h.end(op, INFO, error="CANCELLED: the run ended first")
            return
        except grpc.RpcError as e:
            err, code = _err(e)
            definite = code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
            self.h.end(op, FAIL if definite else INFO, error=err)
            return
        if r.committed:
            self.committed += 1
        else:
            self.rolled_back += 1
        self.h.end(op, OK, {"committed": r.committed, "move_id": r.move_id, "group": r.tablet.group_id,
                            "message": r.message})


class Monitor(threading.Thread):
    """Samples zero's shard map: one `sample` op per answer, naming the read-only
    tablets and their move_ts (moves_checks.read_only_spans), and any tablet that no
    group or more than one holds (moves_checks.sampled_owners)."""

    def __init__(self, zeros: Sequence[str], history: History, stop: threading.Event, *, period: float = 0.25,
                 tablets: Sequence[str] = ()) -> None:
        super().__init__(name="monitor", daemon=True)
        self.zeros = list(zeros)
        self.h = history
        self.stop_event = stop
        self.period = period
        self.tablets = set(tablets)
        self.read_only: dict[str, int] = {}  # tablet -> owner, in the latest sample

    def run(self) -> None:
        chans = [channel(a) for a in self.zeros]
        i = 0
        try:
            while not self.stop_event.wait(self.period):
                i = (i + 1) % len(chans)
                op = self.h.begin(self.name, "sample", node=i)
                try:
                    st = zero_pb2_grpc.ZeroStub(chans[i]).GetState(zero_pb2.GetStateRequest(), timeout=0.5)
                except grpc.RpcError as e:
                    self.h.end(op, INFO, error=_err(e)[0])
                    continue
                ro = {n: (t.move_ts, gid) for gid, g in st.groups.items() for n, t in g.tablets.items()
                      if t.read_only and n in self.tablets}
                self.read_only = {n: gid for n, (_, gid) in ro.items()}
                value: dict[str, Any] = {"version": st.version, "ro": {n: ts for n, (ts, _) in ro.items()}}
                held = {n: sorted(gid for gid, g in st.groups.items() if n in g.tablets) for n in self.tablets}
                if any(len(gs) != 1 for gs in held.values()):  # a tablet unowned or owned twice
                    value["owners"] = {n: gs for n, gs in held.items() if len(gs) != 1}
                self.h.end(op, OK, value)
        finally:
            for ch in chans:
                ch.close()


class MovesNemesis(Nemesis):
    """The zero nemesis (tests/fault/nemesis.py) plus faults of the data nodes:

    kill9_datanode  kill -9 a data node and restart it (same address and data dir)
                    after the hold;
    pause_datanode  SIGSTOP a data node for up to `pause_hold` seconds (longer than
                    zero's move timeout: a stalled copy must time out and roll back,
                    and its late chunks must not resurrect the copy), then SIGCONT.

    Both prefer, when the monitor shows a tablet read-only within a second, the source
    of that move (or another group's node, which may be its destination). Heal resumes
    and restarts data nodes too."""

    def __init__(self, target: Any, history: History, seed: int, *, datanodes: Sequence[DataNodeProc],
                 monitor: Monitor, pause_hold: tuple[float, float] = (0.5, 6.0), **kw: Any) -> None:
        super().__init__(target, history, seed, **kw)
        self.datanodes = list(datanodes)
        self.monitor = monitor
        self.pause_hold = pause_hold

    def _pick_datanode(self) -> tuple[DataNodeProc, str]:
        deadline = time.monotonic() + 1.0
        while not self.monitor.read_only and time.monotonic() < deadline:
            time.sleep(0.05)
        moving = dict(self.monitor.read_only)
        up = [d for d in self.datanodes if d.running and d not in self.paused]
        if not up:
            raise RuntimeError("no data node to fault")
        if moving:
            tablet, src = self.rng.choice(sorted(moving.items()))
            srcs = [d for d in up if d.group == src]
            pick = srcs[0] if srcs and self.rng.random() < 0.5 else self.rng.choice(up)
            return pick, f"while {tablet} was read-only on group {src}"
        return self.rng.choice(up), "no move seen"

    def _kill9_datanode(self) -> dict[str, Any]:
        pick, why = self._pick_datanode()
        pick.kill9()
        self._hold()
        pick.start()
        return {"node": pick.name, "when": why}

    def _pause_datanode(self) -> dict[str, Any]:
        pick, why = self._pick_datanode()
        self.paused.add(pick)  # type: ignore[arg-type]  # heal() resumes it
        pick.signal(signal.SIGSTOP)
        held = self.rng.uniform(*self.pause_hold)
        time.sleep(held)
        pick.signal(signal.SIGCONT)
        self.paused.discard(pick)  # type: ignore[arg-type]
        return {"node": pick.name, "when": why, "held": round(held, 2)}

    def heal(self) -> None:
        super().heal()
        for d in self.datanodes:
            if not d.running:
                d.start()
