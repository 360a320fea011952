"""Start a local kvstore cluster: N node processes from one command.

    python -m examples.kvstore.cluster --nodes 3 --base-port 12379

Node i serves HTTP on base+2(i-1) and raft on base+2(i-1)+1; with --base-port 0 the
ports are picked free by the OS. Each node's HTTP address is printed. Ctrl-C (SIGINT)
or SIGTERM stops every node gracefully. Run it again with the same --data-dir to
restart the cluster with its data (the ports may differ; the ids stay).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE = 10.0  # seconds a node gets to stop before it is killed


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free now (the OS picks them; we release them at once,
    so another process could take one before our nodes bind it — fine for a demo)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.kvstore.cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--base-port", type=int, default=12379, help="0 picks free ports")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data-dir", default="kvstore-data", help="node i keeps its data in DIR/node-i")
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--snapshot-count", type=int, default=1000)
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes must be at least 1")

    n = args.nodes
    ports = free_ports(2 * n) if args.base_port == 0 else [args.base_port + i for i in range(2 * n)]
    http = [f"{args.host}:{ports[2 * i]}" for i in range(n)]
    cluster = ",".join(f"{args.host}:{ports[2 * i + 1]}" for i in range(n))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    children: dict[int, subprocess.Popen[bytes]] = {}
    for i in range(1, n + 1):
        cmd = [sys.executable, "-m", "examples.kvstore", "--id", str(i), "--cluster", cluster,
               "--http", http[i - 1], "--data-dir", os.path.join(args.data_dir, f"node-{i}"),
               "--tick-ms", str(args.tick_ms), "--snapshot-count", str(args.snapshot_count)]
        children[i] = subprocess.Popen(cmd, env=env)
        print(f"node {i}: http://{http[i - 1]}  (pid {children[i].pid}, "
              f"data {os.path.join(args.data_dir, f'node-{i}')})", flush=True)
    print("Ctrl-C stops the cluster", flush=True)

    # Wait for a signal; report nodes that exit on their own (the others keep running).
    reported: set[int] = set()
    while not stop.wait(0.2):
        for i, c in children.items():
            if c.poll() is not None and i not in reported:
                reported.add(i)
                print(f"node {i} exited with code {c.returncode}", flush=True)
        if len(reported) == n:
            return 1

    # SIGTERM every node (on Ctrl-C the terminal already sent them SIGINT; a second
    # signal just repeats the stop request), then wait, then kill what is left.
    for c in children.values():
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    code = 0
    for i, c in children.items():
        try:
            c.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"node {i} did not stop in {STOP_GRACE:.0f}s; killing it", flush=True)
            c.kill()
            c.wait()
            code = 1
    print("cluster stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
