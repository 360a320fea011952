"""The peer wire (zero/replica/wire*.py) between real `zero run` processes: every link of a
3-zero cluster is the wire, a leader killed with kill -9 is replaced fast (its
followers' wire connections end, which the crash failover acts on) and writes go on;
with --tls-dir the links are the wire over TLS, and a peer whose certificate has
another role than zero is refused at the wire's door, counted."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from procs import FAST, REPO, ProcCluster, clean_env, write_until_ok
from support import free_ports, until
from zero.pb import zero_pb2

SLOW_ELECTION = ("--tick", "20ms", "--election-ticks", "100")  # a 2 s election timeout


def wire_links(log: str) -> set[int]:
    """The peers this zero's log says a wire link came up to."""
    out = set()
    for line in log.splitlines():
        if '"peer up"' in line:
            rec = json.loads(line)
            if rec.get("link") == "wire":
                out.add(int(rec["peer"]))
    return out


def lease(stub):  # type: ignore[no-untyped-def]
    """A write: one UID leased through Raft."""
    return stub.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1), timeout=3)


@pytest.mark.timeout(180)
def test_a_cluster_on_the_wire_survives_kill_9_of_its_leader(tmp_path: Path) -> None:
    c = ProcCluster(tmp_path / "c", 3, flags=SLOW_ELECTION)
    try:
        c.start(timeout=60)
        ids = {z.raft_id for z in c.zeros}
        for z in c.zeros:  # every link is the wire (none fell back to the gRPC stream)
            until(lambda z=z: wire_links(z.log_tail(200000)) == ids - {z.raft_id}, 20,
                  message=f"{z.name}'s wire links")
        write_until_ok(c.addrs, lease, 20)
        lead = c.wait_leader()
        others = [z for z in c.zeros if z is not lead]
        time.sleep(0.5)
        t0 = time.monotonic()
        lead.kill9()
        new = until(lambda: c.leader(among=others), 10, interval=0.01, message="a new leader")
        took = time.monotonic() - t0
        assert took < 1.5, f"a new leader after {took:.2f}s with a 2 s election timeout: the crash was not detected"
        assert any("forgetting it and campaigning soon" in z.log_tail(200000) for z in others)
        assert new in others
        write_until_ok([z.addr for z in others], lease, 20)
    finally:
        c.cleanup()


def _https_json(url: str, ctx: ssl.SSLContext) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
            body = r.read()
            return r.status, (json.loads(body) if r.headers.get_content_type() == "application/json" else body)
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return 0, None


@pytest.mark.timeout(180)
def test_tls_wire_links_and_a_wrong_role_refused(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")
    from support.tls import CA

    ca = CA()
    zero_dir = tmp_path / "tls-zero"
    ca.write(zero_dir, "zero", "zero")
    dn = ca.issue("dn", "datanode")
    (tmp_path / "dn.crt").write_bytes(dn.cert)
    (tmp_path / "dn.key").write_bytes(dn.key)
    client = ssl.create_default_context(cadata=ca.pem.decode())
    client.load_cert_chain(str(zero_dir / "node.crt"), str(zero_dir / "node.key"))
    procs: list[tuple[subprocess.Popen[bytes], Path, int]] = []
    try:
        first = ""
        for i in range(3):
            grpc_port, http_port = free_ports(2)
            log = tmp_path / f"z{i + 1}.log"
            args = [sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / f"z{i + 1}"),
                    "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
                    "--my", f"localhost:{grpc_port}", "--tls-dir", str(zero_dir), "--log-format", "json", *FAST]
            if first:
                args += ["--peer", first]
            with open(log, "w") as out:
                procs.append((subprocess.Popen(args, cwd=REPO, env=clean_env(), stdout=out, stderr=subprocess.STDOUT),
                              log, http_port))
            first = first or f"localhost:{grpc_port}"

            def healthy(p: subprocess.Popen[bytes] = procs[-1][0], log: Path = log, port: int = http_port) -> bool:
                assert p.poll() is None, log.read_text()
                return _https_json(f"https://localhost:{port}/health", client)[0] == 200
            until(healthy, 60, message=f"z{i + 1} healthy over HTTPS")

        for p, log, _ in procs:  # each zero has wire links to both others, over TLS
            until(lambda log=log: len(wire_links(log.read_text())) == 2, 30, message=f"{log.name}: wire links")
            assert '"tls": true' in log.read_text()

        # A certificate of the CA with the datanode role, straight at a zero's wire port.
        _, log, http_port = procs[0]
        port = _wire_port(log.read_text())
        ctx = ssl.create_default_context(cadata=ca.pem.decode())
        ctx.load_cert_chain(str(tmp_path / "dn.crt"), str(tmp_path / "dn.key"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"ZRAFTW1\n")
                try:
                    got = s.recv(100)
                except (ssl.SSLError, ConnectionError):
                    got = b""
                assert got == b"", "the listener answered a datanode certificate instead of closing"

        def counted() -> bool:
            code, body = _https_json(f"https://localhost:{http_port}/metrics", client)
            return code == 200 and b'zero_peer_wire_errors_total{reason="role"} 1.0' in body
        until(counted, 10, message="the refused role counted in zero_peer_wire_errors")
        assert "may not send Raft messages" in log.read_text()
        for p, log, _ in procs:  # the cluster is unharmed
            assert p.poll() is None, log.read_text()
    finally:
        for p, _, _ in procs:
            p.kill()
            p.wait(10)


def _wire_port(log: str) -> int:
    for line in log.splitlines():
        if '"peer wire listening"' in line:
            return int(json.loads(line)["port"])
    raise AssertionError("no 'peer wire listening' line in the log")
