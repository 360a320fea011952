"""Real `zero run` processes on loopback for the multi-process tests and the cluster
benchmarks: free ports from the OS, logs in files (a chatty child never blocks on a full
pipe), every wait a poll with a deadline, and a ProcCluster that knows how to find the
leader, kill, pause and restart its zeros.

Used by tests/cluster/ and tests/fault/, and by bench/run.py, bench/failover_bench.py,
bench/idle_cpu_bench.py and bench/peers/failover.py, which put this directory and
tests/ (for `support`, where the ports and the poll come from) on sys.path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from zero.pb import zero_pb2, zero_pb2_grpc

from support import free_ports, until

REPO = Path(__file__).resolve().parents[2]
FAST = ("--tick", "20ms", "--election-ticks", "10")  # a 200 ms election timeout


def http_json(url: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
    """(status, JSON body); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}


class ZeroProc:
    """One `zero run` child. Its ports and data dir survive restarts; the log file is
    appended to across restarts."""

    def __init__(self, data_dir: Path, name: str, *, flags: Sequence[str] = FAST,
                 advertise: str | None = None) -> None:
        self.data_dir = data_dir
        self.name = name
        self.grpc_port, self.http_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.grpc_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.flags = list(flags)
        self.log = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None
        self._channel: grpc.Channel | None = None
        self.raft_id = 0
        # What --my says (peers dial it), when not the gRPC address itself: e.g. a proxy.
        self.advertise = advertise
        self.exits: list[str] = []  # exits nobody asked for (note_exit)
        self._asked: set[int] = set()  # pids this object signalled to stop
        self._noted: set[int] = set()

    def start(self, *extra: str) -> ZeroProc:
        assert not self.running, f"{self.name} is already running"
        self.note_exit()
        args = [sys.executable, "-m", "zero", "run", "--data-dir", str(self.data_dir),
                "--grpc-addr", self.addr, "--http-addr", f"127.0.0.1:{self.http_port}",
                "--my", self.advertise or self.addr,
                "--log-format", "json", *self.flags, *extra]
        if self._out is not None:
            self._out.close()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "a")
        self._out.write(f"--- start: {' '.join(args[2:])}\n")
        self._out.flush()
        self.proc = subprocess.Popen(args, cwd=REPO, env=clean_env(), stdout=self._out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def health(self) -> tuple[int, dict[str, Any]]:
        return http_json(self.http + "/health")

    def wait_healthy(self, timeout: float = 20.0) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            self.check_alive()
            code, body = self.health()
            return body if code == 200 else None
        body = until(ok, timeout, message=f"{self.name} /health 200")
        self.raft_id = int(body["raft_id"])
        return body

    # -- gRPC ------------------------------------------------------------------------------------
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.addr)
        return self._channel

    @property
    def stub(self) -> zero_pb2_grpc.ZeroStub:
        return zero_pb2_grpc.ZeroStub(self.channel())

    @property
    def admin(self) -> zero_pb2_grpc.ZeroAdminStub:
        return zero_pb2_grpc.ZeroAdminStub(self.channel())

    def status(self, timeout: float = 1.0) -> zero_pb2.RaftStatusResponse | None:
        try:
            return self.admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- signals ---------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.note_exit()
            self._asked.add(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def note_exit(self) -> None:
        """Record in `exits` that the process ended though nobody signalled it to stop
        (a crash, an exit of its own, or a kill -9 from outside the test): a fault run
        reports it, where a restart would otherwise hide it."""
        p = self.proc
        if p is None or p.poll() is None or p.pid in self._asked or p.pid in self._noted:
            return
        self._noted.add(p.pid)
        self.exits.append(f"{self.name} (pid {p.pid}) exited with {p.returncode}, asked by nobody: "
                          f"...{self.log_tail(600)}")

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.log_tail()}") from None

    def kill9(self) -> None:
        self._close_channel()
        if self.running:
            self.signal(signal.SIGKILL)
            self.wait_exit(10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; the exit code."""
        self._close_channel()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)  # a paused zero cannot handle SIGTERM
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def cleanup(self) -> None:
        self._close_channel()
        if self.proc is not None and self.proc.poll() is None:
            self._asked.add(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None


class ProcCluster:
    """N zeros: zero 0 bootstraps, the others join through it with --peer."""

    def __init__(self, root: Path, n: int, *, flags: Sequence[str] = FAST) -> None:
        self.root = root
        self.flags = list(flags)
        self.zeros = [ZeroProc(root / f"z{i + 1}", f"z{i + 1}", flags=flags) for i in range(n)]

    def add(self) -> ZeroProc:
        z = ZeroProc(self.root / f"z{len(self.zeros) + 1}", f"z{len(self.zeros) + 1}", flags=self.flags)
        self.zeros.append(z)
        return z

    @property
    def addrs(self) -> list[str]:
        return [z.addr for z in self.zeros]

    def start(self, timeout: float = 30.0) -> ProcCluster:
        first = self.zeros[0].start()
        first.wait_healthy(timeout)
        for z in self.zeros[1:]:
            z.start("--peer", first.addr)
        for z in self.zeros[1:]:
            z.wait_healthy(timeout)
        self.wait_voters(len(self.zeros), timeout)
        return self

    def running(self) -> list[ZeroProc]:
        return [z for z in self.zeros if z.running]

    def leader(self, among: Sequence[ZeroProc] | None = None) -> ZeroProc | None:
        """The zero that says it leads and that every other running zero in `among`
        follows (all agree on one leader), else None."""
        zs = list(among) if among is not None else self.running()
        seen: dict[str, dict[str, Any]] = {}
        for z in zs:
            code, body = z.health()
            if code != 200:
                return None
            seen[z.name] = body
        leads = [z for z in zs if seen[z.name].get("role") == "LEADER"]
        if len(leads) != 1:
            return None
        lid = seen[leads[0].name]["raft_id"]
        if any(b.get("leader_id") != lid for b in seen.values()):
            return None
        return leads[0]

    def wait_leader(self, timeout: float = 20.0, among: Sequence[ZeroProc] | None = None) -> ZeroProc:
        for z in (among or self.running()):
            z.check_alive()
        return until(lambda: self.leader(among), timeout, message="one leader known to every running zero")

    def wait_voters(self, n: int, timeout: float = 30.0) -> None:
        def done() -> bool:
            lead = self.leader()
            if lead is None:
                return False
            st = lead.status()
            return (st is not None and len(st.progress) == n
                    and not any(p.learner for p in st.progress.values()))
        until(done, timeout, message=f"{n} voters and no learners")

    def cleanup(self) -> None:
        for z in self.zeros:
            z.cleanup()


def write_until_ok(addrs: Sequence[str], fn: Callable[[zero_pb2_grpc.ZeroStub], Any], timeout: float,
                   what: str = "a write") -> Any:
    """Call `fn(stub)` on each address in turn until one succeeds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    chans = {a: grpc.insecure_channel(a) for a in addrs}
    try:
        while time.monotonic() < deadline:
            for a in addrs:
                try:
                    return fn(zero_pb2_grpc.ZeroStub(chans[a]))
                except grpc.RpcError as e:
                    last = e
            time.sleep(0.05)
    finally:
        for c in chans.values():
            c.close()
    raise AssertionError(f"{what} did not succeed within {timeout}s (last: {last})")
