"""A PySyncObj 0.3.17 cluster of three processes on loopback, for bench/run.py.

PySyncObj is installed with pip into the runner's own venv (under the cache dir, never
into the project's venv, never vendored); each node runs pysyncobj_node.py there. It has
no client protocol: the load runs inside the leader's process (threads calling the
`@replicated` set synchronously), so its figures carry no client RPC hop, unlike zero's
and etcd's. It never fsyncs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.failover import free_ports, until

VERSION = "0.3.17"
NODE = Path(__file__).with_name("pysyncobj_node.py")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zero-bench"


def install(allow: bool) -> tuple[str | None, str | None]:
    """(python of a venv with pysyncobj VERSION, None) or (None, why not)."""
    venv = cache_dir() / f"pysyncobj-{VERSION}"
    py = venv / "bin" / "python"
    check = [str(py), "-c", f"import pysyncobj, importlib.metadata as m; assert m.version('pysyncobj') == '{VERSION}'"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(py), None
    if not allow:
        return None, "PySyncObj is not installed and --no-install was given"
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"pysyncobj=={VERSION}"],
                           capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        return None, f"pip install pysyncobj=={VERSION} into {venv} failed: {(r.stderr or r.stdout).strip()[-300:]}"
    return str(py), None


class PySyncObjCluster:
    def __init__(self, python: str, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.python, self.root = python, root
        self.addrs = [f"127.0.0.1:{port}" for port in free_ports(3)]
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, timeout: float = 30.0) -> PySyncObjCluster:
        for i, a in enumerate(self.addrs):
            with open(self.root / f"p{i + 1}.log", "a") as err:
                self.procs[a] = subprocess.Popen(
                    [self.python, str(NODE), a, *[b for b in self.addrs if b != a]], cwd=self.root,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        until(self.leader, timeout, message="a PySyncObj leader known to all three", interval=0.2)
        return self

    def ask(self, addr: str, cmd: str) -> dict[str, Any]:
        p = self.procs[addr]
        if p.poll() is not None:
            raise AssertionError(f"PySyncObj node {addr} exited with {p.returncode}")
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(cmd + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"PySyncObj node {addr} closed its output")
        return json.loads(line)

    def leader(self) -> str | None:
        seen = [self.ask(a, "status") for a in self.addrs]
        leaders = {s["leader"] for s in seen}
        if len(leaders) == 1 and None not in leaders and all(s["ready"] for s in seen):
            return leaders.pop()
        return None

    def bench(self, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
        lead = until(self.leader, 20, message="a PySyncObj leader", interval=0.2)
        return self.ask(lead, f"bench {concurrency} {seconds} {warmup}")

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()
