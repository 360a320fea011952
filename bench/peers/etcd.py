"""An etcd 3.4 cluster of three members on loopback (Debian's etcd-server), for
bench/run.py. Each member listens on 127.0.0.1 only (client and peer URLs, free ports),
keeps its data in its own dir (the WAL is fsynced: no --unsafe-no-fsync), and logs to a
file. `install()` puts etcd on the machine with apt-get when it is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.peers.failover import free_ports, until

PACKAGES = ("etcd-server", "etcd-client")


def install(allow: bool) -> str | None:
    """None when `etcd` and `etcdctl` are usable, else why not (after trying apt-get as root)."""
    if shutil.which("etcd") and shutil.which("etcdctl"):
        return None
    if not allow:
        return "etcd is not installed and --no-install was given"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "etcd is not installed and apt-get needs root (apt-get install etcd-server etcd-client)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", *PACKAGES]
    for attempt in (cmd, ["apt-get", "update", "-qq"], cmd):
        r = subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=600)
        if attempt is cmd and r.returncode == 0:
            break
    if shutil.which("etcd") and shutil.which("etcdctl"):
        return None
    return f"apt-get install {' '.join(PACKAGES)} failed: {r.stderr.strip()[-300:]}"


def version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split(":")[-1].strip() if out else "?"


class EtcdMember:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data_dir = root / name
        self.client_port, self.peer_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.client_port}"
        self.client_url = f"http://{self.addr}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.log = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, cluster: str, flags: list[str]) -> None:
        args = ["etcd", "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "zero-bench", *flags]
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def cleanup(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


class EtcdCluster:
    """Three members; `flags` are extra etcd flags (e.g. --election-timeout)."""

    def __init__(self, root: Path, flags: list[str] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.members = [EtcdMember(root, f"e{i + 1}") for i in range(3)]
        self.flags = list(flags or [])
        self.initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def addrs(self) -> list[str]:
        return [m.addr for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for m in self.members:
            m.start(self.initial, self.flags)
        self.wait_leader(timeout)
        return self

    def restart(self, m: EtcdMember) -> None:
        m.start(self.initial, self.flags)  # an existing data dir wins over the --initial-* flags

    def _status(self) -> list[dict]:
        eps = ",".join(m.client_url for m in self.members if m.running)
        r = subprocess.run(["etcdctl", "--endpoints", eps, "--dial-timeout", "1s", "--command-timeout", "1s",
                            "endpoint", "status", "-w", "json"],
                           capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"))
        try:
            return json.loads(r.stdout or "[]")
        except ValueError:
            return []

    def leader(self) -> EtcdMember | None:
        """The member every running member names as leader, else None."""
        running = [m for m in self.members if m.running]
        st = self._status()
        if len(st) != len(running):
            return None
        leaders = {s["Status"]["leader"] for s in st}
        if len(leaders) != 1 or 0 in leaders:
            return None
        (lid,) = leaders
        for s in st:
            if s["Status"]["header"]["member_id"] == lid:
                return next((m for m in running if m.client_url == s["Endpoint"]), None)
        return None

    def wait_leader(self, timeout: float = 20.0) -> EtcdMember:
        for m in self.members:
            if m.proc is not None and not m.running:
                raise AssertionError(f"etcd {m.name} exited: {m.log.read_text(errors='replace')[-2000:]}")
        return until(self.leader, timeout, message="an etcd leader known to every member", interval=0.1)

    def cleanup(self) -> None:
        for m in self.members:
            m.cleanup()


# -- Txn: a compare-and-put, for the oracle's comparison (bench/oracle_bench.py) ---------------------
# Raw protobuf bytes, as bench/peers/load.py sends KV/Put: no etcd Python package is needed.
TXN_METHOD = "/etcdserverpb.KV/Txn"
_LESS, _MOD = 2, 2  # Compare.CompareResult.LESS, Compare.CompareTarget.MOD


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def txn_request(keys: list[bytes], below_rev: int, value: bytes) -> bytes:
    """A `KV/Txn` that puts `value` at every key if none of them was modified at or after
    `below_rev` (compare mod_revision < below_rev for each; a missing key has
    mod_revision 0): the compare-and-put of an optimistic transaction whose snapshot
    was read at revision below_rev - 1. No failure branch."""
    out = bytearray()
    for k in keys:
        cmp = (_varint(1 << 3) + _varint(_LESS) + _varint(2 << 3) + _varint(_MOD) + _field(3, k)
               + _varint(6 << 3) + _varint(below_rev))
        out += _field(1, cmp)
    for k in keys:
        out += _field(2, _field(2, _field(1, k) + _field(2, value)))  # RequestOp.request_put
    return bytes(out)


def _fields(data: bytes) -> dict[int, int | bytes]:
    """The last value of each field of a protobuf message (varints and bytes only)."""
    out: dict[int, int | bytes] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            out[num], i = data[i:i + n], i + n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire} in an etcd response")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def txn_response(data: bytes) -> tuple[bool, int]:
    """(succeeded, the header's revision) of a `KV/Txn` answer."""
    f = _fields(data)
    header = f.get(1, b"")
    rev = _fields(header).get(3, 0) if isinstance(header, bytes) else 0
    return bool(f.get(2, 0)), rev if isinstance(rev, int) else 0
