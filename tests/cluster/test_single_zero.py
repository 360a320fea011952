"""Real `zero run` processes on free loopback ports: start, health, state, metrics, leases
across kill -9, graceful SIGTERM, a corrupt WAL, a locked data dir, refused flags.

Every wait polls with a deadline; ports are free ones taken from the OS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support import free_ports, until
from zero.pb import zero_pb2, zero_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def http_get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")
    except OSError:
        return 0, b"", ""


class Zero:
    """One `zero run` child process."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.grpc_port, self.http_port = free_ports(2)
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.args = [sys.executable, "-m", "zero", "run", "--data-dir", str(data_dir),
                     "--grpc-addr", self.grpc, "--http-addr", f"127.0.0.1:{self.http_port}",
                     "--my", self.grpc, *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._channel: grpc.Channel | None = None

    def healthy(self, timeout: float = 15.0) -> Zero:
        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"zero exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            return http_get(self.http + "/health")[0] == 200
        until(ok, timeout, message="/health 200")
        return self

    @property
    def stub(self) -> zero_pb2_grpc.ZeroStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc)
        return zero_pb2_grpc.ZeroStub(self._channel)

    def exit_code(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"zero did not exit within {timeout}s") from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.exit_code(5)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def zeros():
    started: list[Zero] = []

    def start(data_dir: Path, *extra: str) -> Zero:
        z = Zero(data_dir, *extra)
        started.append(z)
        return z

    yield start
    for z in started:
        z.cleanup()


@pytest.mark.timeout(30)
def test_serves_health_state_metrics_and_stops_on_sigterm(tmp_path, zeros) -> None:
    z = zeros(tmp_path / "zw").healthy()
    status, body, _ = http_get(z.http + "/health")
    h = json.loads(body)
    assert h["role"] == "LEADER" and h["raft_id"] == 1 and h["leader_id"] == 1
    assert {"term", "applied", "commit"} <= h.keys()
    assert http_get(z.http + "/live")[0] == 200

    state = until(lambda: (lambda s: s if s.get("cluster_id") and s.get("zeros") else None)(
        json.loads(http_get(z.http + "/state")[1] or b"{}")), 5, message="/state with the cluster id")
    assert state["zeros"]["1"]["addr"] == z.grpc and state["zeros"]["1"]["leader"] is True

    ids = z.stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=10), timeout=5)
    assert ids.end_id - ids.start_id == 9
    status, body, ctype = http_get(z.http + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    text = body.decode()
    for name in ("zero_raft_term", "zero_is_leader", "zero_leader_changes_total", "zero_raft_commit_index",
                 "zero_raft_applied_index", "zero_proposals_total", "zero_proposal_apply_seconds_bucket",
                 "zero_wal_fsync_seconds_bucket", "zero_ready_loop_seconds_bucket", "zero_snapshots_total",
                 "zero_lease_max_uid", "zero_lease_max_txn_ts", "zero_grpc_requests_total",
                 "zero_grpc_request_seconds_bucket", "zero_zeros", "zero_groups", "zero_members", "zero_tablets"):
        assert name in text, name
    assert 'zero_grpc_requests_total{code="OK",method="zero.v1.Zero/AssignIds"} 1.0' in text

    with grpc.insecure_channel(z.grpc) as ch:
        hs = health_pb2_grpc.HealthStub(ch)
        until(lambda: hs.Check(health_pb2.HealthCheckRequest(), timeout=2).status
              == health_pb2.HealthCheckResponse.SERVING, 5, message="gRPC health SERVING")

    # A second zero on the same data dir is refused.
    other = zeros(tmp_path / "zw")
    assert other.exit_code(15) == 1
    assert "in use by another zero" in other.proc.stderr.read()

    t0 = time.monotonic()
    assert z.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 5
    out = z.proc.stderr.read()
    assert "Traceback" not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all(line["raft_id"] == 1 and "term" in line for line in lines)
    assert any(line["event"] == "zero stopped" for line in lines)


@pytest.mark.timeout(40)
def test_leases_never_repeat_across_kill_9(tmp_path, zeros) -> None:
    data = tmp_path / "zw"
    uid_max = ts_max = 0
    for round_ in range(3):
        z = zeros(data).healthy()
        for _ in range(20):
            r = z.stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=3), timeout=5)
            assert r.start_id > uid_max and r.end_id == r.start_id + 2, (round_, r, uid_max)
            uid_max = r.end_id
            t = z.stub.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5)
            assert t.start_id > ts_max, (round_, t, ts_max)
            ts_max = t.end_id
        assert z.stop(signal.SIGKILL) == -signal.SIGKILL


@pytest.mark.timeout(30)
def test_corrupt_wal_refuses_to_start(tmp_path, zeros) -> None:
    data = tmp_path / "zw"
    z = zeros(data).healthy()
    for i in range(60):
        z.stub.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=5)
    assert z.stop() == 0
    segments = sorted((data / "wal").glob("*.wal"))
    assert segments
    seg = max(segments, key=lambda p: p.stat().st_size)
    raw = bytearray(seg.read_bytes())
    mid = len(raw) // 2
    for i in range(mid, mid + 8):
        raw[i] ^= 0xFF
    seg.write_bytes(bytes(raw))

    bad = zeros(data)
    assert bad.exit_code(15) == 1
    err = bad.proc.stderr.read()
    assert seg.name in err, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "cannot start" in line]) == 1


@pytest.mark.timeout(30)
def test_refused_flags_exit_2(tmp_path) -> None:
    for args, needle in ((["--peer", "no-port"], "--peer"),
                         (["--tls-dir", str(tmp_path)], "ca.crt is missing"),
                         (["--force-new-cluster", "--peer", "z:5080"], "drop --peer"),
                         (["--tick", "fast"], "not a duration")):
        p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "zw"), *args],
                           cwd=REPO, capture_output=True, text=True, timeout=20)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr, (args, p.stderr)
    assert not (tmp_path / "zw").exists()  # refused before touching anything
    p = subprocess.run([sys.executable, "-m", "zero", "run", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0 and "ZERO_GRPC_ADDR" in p.stdout and "--snapshot-after" in p.stdout


@pytest.mark.timeout(90)
def test_failed_join_never_costs_the_cluster_its_quorum(tmp_path, zeros) -> None:
    """The README path that once broke a one-zero cluster: `zero run --peer A
    --http-addr X` with X busy joined, was promoted to voter (voters 1, 2), then exited
    "cannot listen for HTTP"; with 2 voters and one of them gone, zero 1 lost its quorum.
    A zero now holds both ports and its data dir before it contacts the cluster: the
    failed joiner never becomes a member, and the cluster keeps serving."""
    a = zeros(tmp_path / "a").healthy()
    admin = zero_pb2_grpc.ZeroAdminStub(grpc.insecure_channel(a.grpc))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        b = zeros(tmp_path / "b", "--peer", a.grpc, "--http-addr", f"127.0.0.1:{port}")
        assert b.exit_code(30) == 1
        err = b.proc.stderr.read()
        assert f"cannot listen for HTTP on 127.0.0.1:{port}" in err, err
        assert "Traceback" not in err, err

    # Past the promotion window (1 s at least): zero 1 alone is still the whole
    # configuration, leads and serves.
    time.sleep(1.5)
    st = admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=5)
    assert st.role == "LEADER" and set(st.progress) == {1}, st
    state = a.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
    assert set(state.zeros) == {1}, state.zeros
    assert http_get(a.http + "/health")[0] == 200
    ts = a.stub.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=5)
    assert ts.start_id > 0
    assert not (tmp_path / "b" / "IDENTITY").exists()  # nothing to clean up before retrying

    # The same joiner on a free port joins and, once it stayed caught up, votes.
    b2 = zeros(tmp_path / "b", "--peer", a.grpc).healthy(30)
    until(lambda: set(admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=5).progress) == {1, 2}
          and not any(p.learner for p in admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=5)
                      .progress.values()), 30, message="zero 2 promoted to voter")
    assert b2.stop() == 0
