"""`zero local --nodes N`: a whole local cluster in one command (SPEC "Processes, ports, CLI").

Each zero is a `zero run` child process on loopback. Node 1 bootstraps the cluster and
the others join through it with --peer, one after another so that the raft ids the
cluster assigns follow the node names (n2 is raft id 2, n3 raft id 3 in a new
cluster). Layout of --data-dir (default ./zw-local):

    local.json     the node count and the ports chosen on the first start
    n1/ n2/ ...    each zero's own data dir (WAL, snapshots, identity)
    n1.log ...     each zero's log (appended across restarts)

Ports are chosen free by the OS on the first start (or from --base-port: gRPC
BASE+i-1, HTTP BASE+1000+i-1 for node i) and kept in local.json: a zero's address is
part of the replicated membership, so a restarted cluster must come back on the same
ports for its zeros to find each other (zero/ops/local_plan.py). A restart starts every
node at once (node 1 alone has no quorum) and --peer is ignored by zeros that already
have an identity.

The addresses are printed once every zero serves (knows a leader) and every zero is a
voter. SIGINT (Ctrl-C) or SIGTERM stops all children: SIGTERM to each (a leader hands
leadership over first), SIGKILL for any still running after STOP_GRACE seconds; then
exit 0. The children run in their own process group, so a terminal's Ctrl-C reaches
only this supervisor and each zero gets exactly one signal (a second SIGTERM makes
`zero run` skip its graceful path); they also get SIGTERM if the supervisor dies.
A child that exits on its own is reported at once with the tail of its log; the
others keep running, and the supervisor then exits 1 when stopped. A zero removed with
`zero admin remove-node` is reported as removed (not as a failure): it exits, and its
data dir can never rejoin.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from zero.ops.local_plan import STATE_FILE, host_port, plan

__all__ = ["add_local_parser", "run_local", "STATE_FILE"]
STOP_GRACE = 10.0  # seconds a child gets after SIGTERM before SIGKILL
START_TIMEOUT = 60.0  # seconds for the cluster to have a leader and all voters
POLL = 0.1
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Flags `zero local` sets for each child itself.
_OWN_FLAGS = ("--data-dir", "--grpc-addr", "--http-addr", "--my", "--peer", "--raft-id")
_PR_SET_PDEATHSIG = 1
_REMOVED_LINE = "zero: removed from the cluster"  # what `zero run` prints when it exits removed (zero/runner.py)


def add_local_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "local", help="run a whole local cluster of zeros (1, 3 or 5) in one command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run N `zero run` processes on this machine as one cluster: node 1 bootstraps, the\n"
                    "others join it. Ports are chosen free (or from --base-port) and kept in\n"
                    "DATA_DIR/local.json, so running the command again restarts the same cluster.\n"
                    "Each zero's log goes to DATA_DIR/nI.log. Flags after `--` go to every `zero run`\n"
                    "(e.g. `zero local -- --tick 50ms --replicas 3`).",
        epilog="Ctrl-C (SIGINT) or SIGTERM stops every zero cleanly (exit 0).\n"
               "Exit 1: the cluster could not start, or a zero exited on its own. Exit 2: usage.")
    p.add_argument("--nodes", type=int, choices=(1, 3, 5), default=None,
                   help="number of zeros (default 3, or as many as DATA_DIR already has)")
    p.add_argument("--data-dir", default="./zw-local",
                   help="directory for every zero's data dir, logs and chosen ports (default ./zw-local)")
    p.add_argument("--base-port", type=int, default=None,
                   help="use fixed ports: node i gets gRPC BASE+i-1 and HTTP BASE+1000+i-1 "
                        "(default: free ports chosen by the OS)")
    p.add_argument("--host", default="127.0.0.1", help="address every zero listens on and advertises "
                                                       "(default 127.0.0.1)")
    p.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- ZERO_RUN_FLAGS",
                   help="more `zero run` flags for every zero, after `--`")


@dataclass(slots=True)
class _Child:
    index: int  # 1-based node number (the dir nI); not the raft id
    grpc_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    raft_id: int = 0
    reported: bool = False  # an exit was already reported

    @property
    def name(self) -> str:
        return f"n{self.index}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


class _Stop(Exception):
    pass


def _http_json(url: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
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


def _set_pdeathsig() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Supervisor:
    def __init__(self, ns: argparse.Namespace, root: Path, plan: list[tuple[int, int]], run_args: list[str],
                 out: TextIO, err: TextIO) -> None:
        self.ns = ns
        self.root = root
        self.run_args = run_args
        self.out = out
        self.err = err
        self.children = [_Child(i + 1, g, h, root / f"n{i + 1}", root / f"n{i + 1}.log")
                         for i, (g, h) in enumerate(plan)]
        self.stop_signal = 0
        self.failed = False

    # -- children -------------------------------------------------------------------------------
    def _spawn(self, c: _Child, peer: str) -> None:
        host = self.ns.host
        args = [sys.executable, "-m", "zero", "run", "--data-dir", str(c.data_dir),
                "--grpc-addr", host_port(host, c.grpc_port), "--http-addr", host_port(host, c.http_port),
                "--my", host_port(host, c.grpc_port), *self.run_args]
        if peer:
            args += ["--peer", peer]
        env = {k: v for k, v in os.environ.items()
               if k not in {"ZERO_" + f[2:].upper().replace("-", "_") for f in _OWN_FLAGS}}
        env.setdefault("ZERO_LOG_FORMAT", "json")
        c.log = open(c.log_path, "ab")
        c.log.write(f"--- zero local: {' '.join(args[1:])}\n".encode())
        c.log.flush()
        c.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=c.log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True, preexec_fn=_set_pdeathsig)

    def check_children(self) -> None:
        for c in self.children:
            if c.proc is None or c.reported:
                continue
            code = c.proc.poll()
            if code is not None:
                c.reported = True
                who = f"zero {c.name} (raft id {c.raft_id or '?'}, pid {c.proc.pid})"
                if code == 1 and _REMOVED_LINE in c.log_tail(200):  # zero admin remove-node: not a failure
                    self.err.write(f"zero local: {who} was removed from the cluster (zero admin remove-node) "
                                   f"and exited; its data dir {c.data_dir} cannot rejoin\n")
                    self.err.flush()
                    continue
                self.failed = True
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                self.err.write(f"zero local: {who} {how} unexpectedly; last lines of {c.log_path}:\n"
                               f"{c.log_tail()}\n")
                self.err.flush()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.stop_signal:
                raise _Stop()
            time.sleep(min(POLL, max(0.0, end - time.monotonic())))
        if self.stop_signal:
            raise _Stop()

    def _health(self, c: _Child) -> tuple[int, dict[str, Any]]:
        return _http_json(f"http://{host_port(self.ns.host, c.http_port)}/health")

    def _wait_joined(self, c: _Child, deadline: float) -> bool:
        """Until c answers /health at all (200 or 503): it has joined and knows its raft id.
        False if it exited or the deadline passed."""
        while True:
            if c.proc is not None and c.proc.poll() is not None:
                self.check_children()
                return False
            code, body = self._health(c)
            if code and body.get("raft_id"):
                c.raft_id = int(body["raft_id"])
                return True
            if time.monotonic() > deadline:
                return False
            self._sleep(POLL)

    def _wait_serving(self, cs: list[_Child], deadline: float) -> dict[str, dict[str, Any]] | None:
        """Until each child in cs answers /health 200 (it knows a leader); None if one exited."""
        bodies: dict[str, dict[str, Any]] = {}
        while True:
            for c in cs:
                if c.proc is not None and c.proc.poll() is not None:
                    self.check_children()
                    return None
                code, body = self._health(c)
                if code == 200:
                    bodies[c.name] = body
                    c.raft_id = int(body.get("raft_id") or 0)
                else:
                    bodies.pop(c.name, None)
            if len(bodies) == len(cs):
                return bodies
            if time.monotonic() > deadline:
                return None
            self._sleep(POLL)

    def _all_voters(self, lead: _Child) -> bool:
        """Every zero is a voter in the leader's view (joiners start as learners)."""
        import grpc  # local: keep `zero local --help` fast

        from zero.pb import zero_pb2, zero_pb2_grpc
        try:
            with grpc.insecure_channel(host_port(self.ns.host, lead.grpc_port)) as ch:
                st = zero_pb2_grpc.ZeroAdminStub(ch).RaftStatus(zero_pb2.RaftStatusRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
        return st.role == "LEADER" and len(st.progress) == len(self.children) and not any(
            p.learner for p in st.progress.values())

    def start(self) -> bool:
        """Start the children and wait until the cluster serves; False on failure."""
        deadline = time.monotonic() + START_TIMEOUT
        first = self.children[0]
        fresh = not (first.data_dir / "IDENTITY").exists() and not (first.data_dir / "wal").exists()
        peer = host_port(self.ns.host, first.grpc_port)
        if fresh:
            self.out.write(f"zero local: starting a new cluster of {len(self.children)} in {self.root}\n")
            self.out.flush()
            self._spawn(first, "")
            if self._wait_serving([first], deadline) is None:
                return False
            # One join at a time: the cluster assigns raft ids in join order, so n2 gets 2.
            for c in self.children[1:]:
                self._spawn(c, peer)
                if not self._wait_joined(c, deadline):
                    return False
        else:
            self.out.write(f"zero local: restarting the cluster in {self.root}\n")
            self.out.flush()
            for c in self.children:
                self._spawn(c, "" if c is first else peer)
        while True:
            bodies = self._wait_serving(self.children, deadline)
            if bodies is None:
                return False
            leads = [c for c in self.children if bodies[c.name].get("role") == "LEADER"]
            if len(leads) == 1 and self._all_voters(leads[0]):
                self._print_addresses(leads[0])
                return True
            if time.monotonic() > deadline:
                return False
            self._sleep(POLL)

    def _print_addresses(self, lead: _Child) -> None:
        host = self.ns.host
        w = self.out.write
        w(f"zero local: {len(self.children)} zero{'s' if len(self.children) > 1 else ''} serving "
          f"(leader: raft id {lead.raft_id})\n")
        w(f"  {'node':<5} {'raft id':<8} {'gRPC':<22} {'HTTP':<30} log\n")
        for c in self.children:
            role = "  leader" if c is lead else ""
            w(f"  {c.name:<5} {c.raft_id:<8} {host_port(host, c.grpc_port):<22} "
              f"{'http://' + host_port(host, c.http_port):<30} {c.log_path}{role}\n")
        addrs = ",".join(host_port(host, c.grpc_port) for c in self.children)
        w(f"zeros: {addrs}\n")
        w(f"try:   zero admin state --addr {host_port(host, lead.grpc_port)}\n")
        w("Ctrl-C stops all zeros.\n")
        self.out.flush()

    def supervise(self) -> None:
        while True:
            self.check_children()
            if all(c.proc is not None and c.proc.poll() is not None for c in self.children):
                self.err.write("zero local: every zero has exited; stopping\n")
                return
            self._sleep(0.2)

    def stop(self) -> bool:
        """SIGTERM to each running child, SIGKILL after STOP_GRACE; True when all exited 0
        (or had already exited and were reported)."""
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in running:
            assert c.proc is not None
            try:
                c.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        clean = True
        for c in running:
            assert c.proc is not None
            try:
                code = c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.err.write(f"zero local: zero {c.name} did not stop within {STOP_GRACE:.0f}s; killing it\n")
                c.proc.kill()
                c.proc.wait()
                clean = False
                continue
            if code != 0:
                clean = False
                self.err.write(f"zero local: zero {c.name} exited with code {code} while stopping; "
                               f"see {c.log_path}\n")
        for c in self.children:
            if c.log is not None:
                c.log.close()
                c.log = None
        return clean


def run_local(ns: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    run_args = list(ns.run_args or [])
    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    for a in run_args:
        if a.split("=", 1)[0] in _OWN_FLAGS:
            err.write(f"zero local: {a.split('=', 1)[0]} is set by zero local for each zero; leave it out\n")
            return EXIT_USAGE
    root = Path(ns.data_dir)
    planned = plan(ns, root, err)
    if planned is None:
        return EXIT_USAGE
    _, ports = planned
    sup = _Supervisor(ns, root, ports, run_args, out, err)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        sup.stop_signal = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            if not sup.start():
                sup.check_children()
                err.write(f"zero local: the cluster did not start (see the logs in {root}); stopping\n")
                sup.stop()
                return EXIT_FAILED
            sup.supervise()
        except _Stop:
            out.write(f"zero local: {signal.Signals(sup.stop_signal).name}: stopping "
                      f"{len(sup.children)} zero(s)\n")
            out.flush()
        # Signals during the stop are absorbed: every child gets exactly one SIGTERM.
        clean = sup.stop()
        if clean and not sup.failed:
            out.write("zero local: all zeros stopped\n")
            out.flush()
            return EXIT_OK
        return EXIT_FAILED
    finally:
        for s, h in old.items():
            signal.signal(s, h)
