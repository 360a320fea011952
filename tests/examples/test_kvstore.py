"""examples/kvstore as users run it: real node processes on free loopback ports.

Writes through one node, reads through another, kill -9 of the leader, writes through
the survivors, restart of the killed node from its data dir (it catches up through a
snapshot, the survivors having compacted their logs), and the one-command cluster
stopping cleanly on SIGINT. Every wait polls with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support import free_ports, until

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=8) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""  # not listening (yet, or any more)


class KVNode:
    """One `python -m examples.kvstore` process."""

    def __init__(self, tmp: Path, nid: int, http_port: int, cluster: str) -> None:
        self.id = nid
        self.url = f"http://127.0.0.1:{http_port}"
        self.data_dir = tmp / f"node-{nid}"
        self.log_path = tmp / f"node-{nid}.log"
        self.cmd = [sys.executable, "-m", "examples.kvstore", "--id", str(nid), "--cluster", cluster,
                    "--http", f"127.0.0.1:{http_port}", "--data-dir", str(self.data_dir),
                    # Fast ticks, and snapshots + compaction often enough to be exercised.
                    "--tick-ms", "50", "--snapshot-count", "20", "--catchup-entries", "5"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any] | None:
        code, body = http("GET", self.url + "/_status")
        return json.loads(body) if code == 200 else None

    def put(self, key: str, value: str, timeout: float = 15) -> None:
        """PUT, retrying while there is no leader (503) or the write timed out (504)."""
        def attempt() -> bool:
            code, body = http("PUT", f"{self.url}/{key}", value.encode())
            assert code in (204, 503, 504, 0), (code, body)
            return code == 204
        until(attempt, timeout, message=f"PUT {key} on node {self.id}")

    def get(self, key: str, timeout: float = 15) -> tuple[int, bytes]:
        def attempt() -> tuple[int, bytes] | None:
            code, body = http("GET", f"{self.url}/{key}")
            assert code in (200, 404, 503, 0), (code, body)
            return (code, body) if code in (200, 404) else None
        got: tuple[int, bytes] = until(attempt, timeout, message=f"GET {key} on node {self.id}")
        return got

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def leader_of(nodes: list[KVNode]) -> KVNode | None:
    """The node every live node agrees is the leader, if any."""
    sts = [n.status() for n in nodes]
    if any(st is None for st in sts):
        return None
    leads = {st["leader"] for st in sts if st is not None}
    if len(leads) != 1 or 0 in leads:
        return None
    lead = leads.pop()
    return next((n for n in nodes if n.id == lead), None)


@pytest.mark.timeout(60)
def test_write_kill_leader_write_restart_read_back(tmp_path: Path) -> None:
    ports = free_ports(6)
    cluster = ",".join(f"127.0.0.1:{p}" for p in ports[1::2])
    nodes = [KVNode(tmp_path, i, ports[2 * (i - 1)], cluster) for i in (1, 2, 3)]
    try:
        for n in nodes:
            n.start()
        lead = until(lambda: leader_of(nodes), 15, message="a leader all nodes agree on")

        # Writes through a follower (forwarded to the leader), reads through another node.
        writer = next(n for n in nodes if n is not lead)
        reader = next(n for n in nodes if n is not writer)
        expected = {f"k{i}": f"v{i}" for i in range(25)}
        for k, v in expected.items():
            writer.put(k, v)
        for k, v in expected.items():
            assert reader.get(k) == (200, v.encode())
        writer.put("doomed", "x")
        assert http("DELETE", f"{reader.url}/doomed")[0] == 204
        assert writer.get("doomed")[0] == 404

        # kill -9 the leader; the survivors elect another and keep serving writes.
        assert lead.proc is not None
        lead.proc.send_signal(signal.SIGKILL)
        lead.proc.wait(5)
        survivors = [n for n in nodes if n is not lead]
        for i in range(25, 60):
            k, v = f"k{i}", f"v{i}"
            survivors[i % 2].put(k, v)
            expected[k] = v
        new_lead = until(lambda: leader_of(survivors), 15, message="a new leader")
        assert new_lead is not lead
        for k, v in expected.items():
            assert survivors[1].get(k) == (200, v.encode())

        # The survivors have snapshotted and compacted past what the killed node has.
        sts = [n.status() for n in survivors]
        assert all(st is not None and st["snapshot_index"] > 0 for st in sts), sts

        # Restart the killed node from its data dir: it gets every key back.
        lead.start()
        for k, v in expected.items():
            assert lead.get(k) == (200, v.encode()), k
        assert lead.get("doomed")[0] == 404
        assert "restarting from" in lead.log()
        assert "installing snapshot" in lead.log()
        st = lead.status()
        assert st is not None and st["keys"] == len(expected)
    finally:
        for n in nodes:
            n.stop()
    for n in nodes:
        assert n.proc is not None and n.proc.returncode in (0, -signal.SIGKILL), n.log()[-3000:]


@pytest.mark.timeout(60)
def test_cluster_command_prints_addresses_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.kvstore.cluster", "--nodes", "3", "--base-port", "0",
         "--data-dir", str(tmp_path / "data"), "--tick-ms", "50"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=open(tmp_path / "cluster.log", "wb"), text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        urls = [line.split()[2] for line in lines]
        pids = [int(line.split("pid ")[1].split(",")[0]) for line in lines]
        assert all(u.startswith("http://127.0.0.1:") for u in urls), lines

        nodes = [KVNode.__new__(KVNode) for _ in urls]
        for i, (n, u) in enumerate(zip(nodes, urls), 1):
            n.id, n.url = i, u
        until(lambda: leader_of(nodes), 15, message="a leader")
        nodes[0].put("hello", "world")
        assert nodes[2].get("hello") == (200, b"world")

        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
        out = proc.stdout.read()
        # On a failure, say which node did not stop and what the nodes logged last.
        assert code == 0, (out, (tmp_path / "cluster.log").read_text()[-3000:])
        assert "cluster stopped" in out
        for pid in pids:  # the children were reaped by the cluster process
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        log = (tmp_path / "cluster.log").read_text()
        assert all(f"node {i}: stopped" in log for i in (1, 2, 3)), log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
