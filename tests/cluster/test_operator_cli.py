"""Real `zero run` / `zero local` processes for the operators' items of issue "Operators'
side" (item 4 c, g, i): SIGINT and SIGTERM stop cleanly at any stage (as soon as zero
handles signals, while it waits for --peer, inside the join call) with one line and exit
0; a wrong --peer fails fast with a clear message; a busy gRPC port and a data dir that
is a file are one clean line; `zero local` names its zeros after their raft ids and says
when one was removed. Free ports from the OS, logs in files, every wait a deadline."""

from __future__ import annotations

import http.server
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from procs import REPO, clean_env
from support import free_port, until

TRACEBACK_WORDS = ("Traceback", "KeyboardInterrupt", "CancelledError")


class Run:
    """One `zero run` child; stderr (the log) goes to a file."""

    def __init__(self, tmp: Path, *flags: str, name: str = "z") -> None:
        self.err_path = tmp / f"{name}.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zero", "run", "--data-dir", str(tmp / name), "--grpc-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--log-format", "json", *flags],
            cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=self._err)

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_err(self, needle: str, timeout: float) -> str:
        def seen() -> str | None:
            text = self.err
            if needle in text:
                return text
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {needle!r}:\n{text}"
            return None
        return until(seen, timeout, message=f"{needle!r} on stderr")

    def exit_code(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout}s:\n{self.err}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


@pytest.fixture
def runs(tmp_path) -> Iterator:
    started: list[Run] = []

    def start(*flags: str, name: str = "z") -> Run:
        r = Run(tmp_path, *flags, name=name)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def assert_clean_stop(r: Run, sig: signal.Signals) -> None:
    assert r.exit_code(15) == 0, r.err
    err = r.err
    for word in TRACEBACK_WORDS:
        assert word not in err, err
    stops = [line for line in err.splitlines() if "while starting" in line]
    assert len(stops) == 1 and sig.name in stops[0], err


def _handles(pid: int, *sigs: int) -> bool:
    """The process has handlers for `sigs` (Linux: SigCgt in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^SigCgt:\s*([0-9a-f]+)$", text, re.M)
    return m is not None and all(int(m.group(1), 16) >> (s - 1) & 1 for s in sigs)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.timeout(60)
def test_signal_as_soon_as_zero_handles_it(runs, sig) -> None:
    """The earliest moment: the handlers are set before the slow imports (gRPC, aiohttp)."""
    r = runs("--peer", f"127.0.0.1:{free_port()}")
    until(lambda: _handles(r.proc.pid, signal.SIGINT, signal.SIGTERM), 15, message="signal handlers", interval=0.005)
    r.proc.send_signal(sig)
    assert_clean_stop(r, sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.timeout(60)
def test_signal_while_waiting_for_the_peer(runs, sig) -> None:
    """--peer pointing at nothing: within a few seconds zero says what it waits for and how
    long is left; a signal then stops it with one line and exit 0 (once a 40-line
    CancelledError/KeyboardInterrupt traceback and exit 130, or a silent 143)."""
    r = runs("--peer", f"127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    err = r.wait_err("waiting for --peer", 20)
    line = next(line for line in err.splitlines() if "waiting for --peer" in line)
    assert "Connection refused" in line and '"gives_up_in": "' in line, line
    # Once the interpreter is up (imports take a second or two), the first line is immediate.
    assert time.monotonic() - t0 < 15
    r.proc.send_signal(sig)
    assert_clean_stop(r, sig)


class _FakeZero:
    """A gRPC server whose health service names zero.v1.Zero SERVING (it looks like a
    zero) but has no Raft service: JoinCluster answers UNIMPLEMENTED and the joiner keeps
    retrying (a join that does not complete); or, with zero=False, a gRPC server that is
    not a zero at all."""

    def __init__(self, *, zero: bool) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        hs = health.HealthServicer()
        hs.set("", health_pb2.HealthCheckResponse.SERVING)
        if zero:
            hs.set("zero.v1.Zero", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(hs, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.timeout(60)
def test_signal_inside_the_join_call(runs, sig) -> None:
    fake = _FakeZero(zero=True)
    try:
        r = runs("--peer", f"127.0.0.1:{fake.port}")
        r.wait_err("join attempt failed", 20)
        r.proc.send_signal(sig)
        assert_clean_stop(r, sig)
    finally:
        fake.stop()


def _one_cannot_start(err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("zero: cannot start:")]
    assert len(lines) == 1 and needle in lines[0], err
    for word in TRACEBACK_WORDS:
        assert word not in err, err


@pytest.mark.timeout(90)
def test_wrong_peer_fails_fast_with_a_clear_message(runs, tmp_path) -> None:
    # Nothing listening: retried, each retry logged with the time left, for --join-timeout.
    r = runs("--peer", f"127.0.0.1:{free_port()}", "--join-timeout", "2s", name="nothing")
    assert r.exit_code(30) == 1
    _one_cannot_start(r.err, "did not answer within 2s (last: Connection refused)")
    assert '"gives_up_in": "2s"' in r.err or '"gives_up_in": "1s"' in r.err, r.err

    # Not a zero, with the default 60 s join timeout: a few seconds, not a minute.
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    other = _FakeZero(zero=False)
    try:
        t0 = time.monotonic()
        a = runs("--peer", f"127.0.0.1:{httpd.server_address[1]}", name="http")
        b = runs("--peer", f"127.0.0.1:{other.port}", name="grpc")
        assert a.exit_code(40) == 1 and b.exit_code(40) == 1
        assert time.monotonic() - t0 < 40
        _one_cannot_start(a.err, "accepts connections but does not answer gRPC: give a zero's gRPC port, "
                                 "not its HTTP port")
        _one_cannot_start(b.err, "answers gRPC but is not a zero")
    finally:
        httpd.shutdown()
        other.stop()
    # Nothing was joined: each data dir can be used again.
    for name in ("nothing", "http", "grpc"):
        assert not (tmp_path / name / "IDENTITY").exists()


@pytest.mark.timeout(60)
def test_busy_grpc_port_and_a_data_dir_that_is_a_file(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "zw"),
                            "--grpc-addr", f"127.0.0.1:{port}", "--http-addr", "127.0.0.1:0"],
                           cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=40)
    assert p.returncode == 1
    assert p.stderr == f"zero: cannot start: cannot listen for gRPC on 127.0.0.1:{port}: Address already in use\n", \
        p.stderr  # no gRPC library line (add_port.cc) before it
    (tmp_path / "afile").write_text("")
    p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "afile"),
                        "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
                       cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=40)
    assert p.returncode == 1
    assert p.stderr == f"zero: cannot start: data dir {tmp_path / 'afile'} is not a directory\n", p.stderr


@pytest.mark.timeout(150)
def test_zero_local_names_follow_raft_ids_and_a_removal_is_reported(tmp_path) -> None:
    root = tmp_path / "local"
    out_path, err_path = tmp_path / "local.out", tmp_path / "local.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "zero", "local", "--nodes", "3", "--data-dir", str(root),
                                 "--", "--tick", "20ms", "--election-ticks", "10"],
                                cwd=REPO, env=clean_env(), stdout=out, stderr=err)
    try:
        text = until(lambda: (lambda t: t if "Ctrl-C stops all zeros" in t else None)(out_path.read_text())
                     if proc.poll() is None else pytest.fail(f"zero local exited {proc.returncode}: "
                                                             f"{err_path.read_text()}"),
                     120, message="zero local serving")
        rows = re.findall(r"^  (n\d)\s+(\d+)\s+(\S+)", text, re.M)
        assert [(name, rid) for name, rid, _ in rows] == [("n1", "1"), ("n2", "2"), ("n3", "3")], text
        leader = re.search(r"zero admin state --addr (\S+)", text).group(1)

        p = subprocess.run([sys.executable, "-m", "zero", "admin", "remove-node", "--addr", leader,
                            "--id", "3", "--group", "0"], cwd=REPO, env=clean_env(), capture_output=True,
                           text=True, timeout=40)
        assert p.returncode == 0 and p.stdout == "removed zero 3\n", (p.stdout, p.stderr)
        err = until(lambda: (lambda t: t if "n3" in t else None)(err_path.read_text()), 30,
                    message="the supervisor reporting n3")
        assert "zero n3 (raft id 3" in err and "was removed from the cluster (zero admin remove-node)" in err, err
        assert "unexpectedly" not in err, err

        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0, err_path.read_text()
        assert "all zeros stopped" in out_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)  # the children get SIGTERM when the supervisor dies (PDEATHSIG)
