"""Delay, jitter, stalled links and dropped connections between zeros through a
userspace proxy (issue 11; the kernel here has no netem). First the proxy itself (bytes
arrive intact, a delay is applied, heal restores, a stall holds and releases, a reset
drops, a connection is attributed to the process that opened it), then seeded nemesis
runs against three `zero run` processes whose peer traffic, and the clients', goes
through it."""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from .loopback import LoopbackCluster
from .proxy import ProxyNet
from .runner import pytest_timeout, run


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[str]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def net() -> Iterator[ProxyNet]:
    n = ProxyNet(seed=7)
    try:
        yield n
    finally:
        n.close()


def _dial(addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise ConnectionError(f"closed after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def _rtt(s: socket.socket) -> float:
    t = time.monotonic()
    s.sendall(b"ping")
    assert _recv_exactly(s, 4) == b"ping"
    return time.monotonic() - t


@pytest.mark.timeout(60)
def test_proxy_bytes_intact_delay_applied_heal_restores(net: ProxyNet, echo: str) -> None:
    addr = net.listen("echo", echo)
    payload = os.urandom(3 << 20)
    with _dial(addr) as s:
        # 3 MiB both ways, concurrently: nothing lost, duplicated or reordered.
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(s, len(payload))))
        reader.start()
        s.sendall(payload)
        reader.join(30)
        assert got and got[0] == payload
        base = min(_rtt(s) for _ in range(5))
        assert base < 0.1, base

        net.delay(100, 20)  # each direction 80-120 ms: a round trip >= 160 ms
        rtts = [_rtt(s) for _ in range(5)]
        assert min(rtts) >= 0.155 and max(rtts) < 1.0, rtts
        assert net.stats["held_chunks"] >= 10

        # Jitter never reorders bytes inside one stream.
        net.delay(30, 30)
        data = os.urandom(1 << 20)
        got.clear()
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(s, len(data))))
        reader.start()
        for i in range(0, len(data), 4096):
            s.sendall(data[i:i + 4096])
        reader.join(30)
        assert got and got[0] == data

        net.heal()
        assert min(_rtt(s) for _ in range(5)) < 0.1


@pytest.mark.timeout(60)
def test_proxy_one_link_delayed_others_not(net: ProxyNet, echo: str) -> None:
    a, b = net.listen("a", echo), net.listen("b", echo)
    net.delay(150, 0, dst="a")
    with _dial(a) as sa, _dial(b) as sb:
        assert _rtt(sa) >= 0.145  # the forward direction only (client -> a)
        assert _rtt(sb) < 0.1


@pytest.mark.timeout(60)
def test_proxy_stall_holds_until_heal_and_reset_drops(net: ProxyNet, echo: str) -> None:
    addr = net.listen("echo", echo)
    with _dial(addr) as s:
        assert _rtt(s) < 0.5
        net.stall(dst="echo")
        s.sendall(b"held")
        s.settimeout(0.4)
        with pytest.raises(socket.timeout):
            s.recv(4)
        s.settimeout(5)
        net.heal()
        assert _recv_exactly(s, 4) == b"held"

        assert net.reset() == 1
        with pytest.raises(OSError):
            s.sendall(b"x")
            if not s.recv(1):
                raise ConnectionResetError("closed")
    with _dial(addr) as s2:  # a new connection works
        assert _rtt(s2) < 0.5
    assert net.stats["resets"] == 1


@pytest.mark.timeout(60)
def test_proxy_attributes_a_connection_to_its_process(echo: str) -> None:
    procs: dict[int, str] = {}
    net = ProxyNet(owners=lambda: procs)
    try:
        addr = net.listen("echo", echo)
        host, _, port = addr.rpartition(":")
        code = (f"import socket,sys; s=socket.create_connection(('{host}',{port})); s.sendall(b'hi'); "
                f"assert s.recv(2)==b'hi'; sys.stdin.read()")
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        procs[child.pid] = "child"
        try:
            deadline = time.monotonic() + 10
            while ("child", "echo") not in net.connections() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ("child", "echo") in net.connections(), net.connections()
            with _dial(addr) as s:  # this process is not known: a client
                assert _rtt(s) < 1
                assert net.links[("client", "echo")] == 1
        finally:
            child.communicate(b"", timeout=10)
    finally:
        net.close()


# -- the nemesis through the proxy -------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path, seed):
    c = LoopbackCluster(tmp_path / "c", 3, proxies=True, front=True, seed=seed)
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.mark.timeout(pytest_timeout(15.0))
@pytest.mark.parametrize("faults", [
    ("delay", "stall_link", "reset_links"),
    ("delay", "stall_link", "reset_links", "kill9_random", "pause_leader", "transfer_storm"),
], ids=["proxy", "proxy-mixed"])
def test_nemesis_through_the_proxy(cluster, seed, soak_seconds, faults) -> None:
    duration = soak_seconds or 15.0
    r = run(cluster, name="proxy-" + "-".join(faults), seed=seed, duration=duration, faults=faults)
    r.check()
    assert r.faults >= 2 and r.operations > 50, r.summary()
    # The faults went through the proxy: peer connections were attributed to their zero,
    # and a delay on every link held traffic (one on a single link may find it idle: two
    # followers do not talk to each other).
    links = cluster.net.links
    assert any(src.startswith("z") and dst.startswith("z") for src, dst in links), dict(links)
    if any(o.value.get("links") == "all" for o in r.history.ops(f="delay", type="ok")):
        assert cluster.net.stats["held_chunks"] > 0, dict(cluster.net.stats)
