"""`zero local`'s plan: how many zeros, on which ports, kept in DATA_DIR/local.json.

Ports are chosen free by the OS on the first start (or from --base-port: gRPC
BASE+i-1, HTTP BASE+1000+i-1 for node i) and kept in local.json: a zero's address is
part of the replicated membership, so a restarted cluster must come back on the same
ports for its zeros to find each other. The plan is refused (a usage error, with the
reason) when local.json is damaged, names another host, holds more zeros than
--nodes asks for (fewer would lose the quorum), or a port is already taken.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any, TextIO

__all__ = ["STATE_FILE", "plan", "free_ports", "port_free", "host_port"]

STATE_FILE = "local.json"


def host_port(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_ports(host: str, n: int) -> list[int]:
    """n distinct ports the OS reports free (the sockets stay open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def plan(ns: argparse.Namespace, root: Path, err: TextIO) -> tuple[int, list[tuple[int, int]]] | None:
    """The node count and (gRPC, HTTP) ports, from local.json or chosen now (and saved);
    None after writing to `err` why the cluster cannot start as asked."""
    path = root / STATE_FILE
    saved: dict[str, Any] | None = None
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            ports = [(int(a), int(b)) for a, b in saved["ports"]]
            saved_host = str(saved.get("host", ns.host))
        except (ValueError, KeyError, TypeError) as e:
            err.write(f"zero local: {path} is damaged ({e}); remove the directory to start afresh\n")
            return None
        if saved_host != ns.host:
            err.write(f"zero local: {root} was created with --host {saved_host}; the zeros' addresses are "
                      f"part of the cluster's state, so use the same host\n")
            return None
        nodes = ns.nodes or len(ports)
        if nodes < len(ports):
            err.write(f"zero local: {root} holds a cluster of {len(ports)} zeros; --nodes {nodes} would leave it "
                      f"without a quorum. Use --nodes {len(ports)} (or remove zeros with `zero admin remove-node`"
                      f" and start afresh in a new --data-dir)\n")
            return None
    else:
        nodes, ports = ns.nodes or 3, []
    if ns.base_port is not None and not ports:
        if not 1 <= ns.base_port <= 65535 - 1000 - nodes:
            err.write(f"zero local: --base-port {ns.base_port} is out of range\n")
            return None
    if len(ports) < nodes:
        if ns.base_port is not None:
            new = [(ns.base_port + i, ns.base_port + 1000 + i) for i in range(len(ports), nodes)]
        else:
            free = free_ports(ns.host, 2 * (nodes - len(ports)))
            new = list(zip(free[0::2], free[1::2]))
        ports = ports + new
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"host": ns.host, "ports": ports}, indent=1) + "\n")
        os.replace(tmp, path)
    elif ns.base_port is not None and saved is not None and ports[0][0] != ns.base_port:
        err.write(f"zero local: note: {root} keeps the ports it was created with "
                  f"(gRPC from {ports[0][0]}); --base-port is ignored\n")
    for i, (g, h) in enumerate(ports[:nodes]):
        for port, what in ((g, "gRPC"), (h, "HTTP")):
            if not port_free(ns.host, port):
                err.write(f"zero local: port {port} ({what} of node {i + 1}) is in use; is this cluster already "
                          f"running? (stop it, or use another --data-dir)\n")
                return None
    return nodes, ports[:nodes]
