"""`zero datanode`'s command line: flags validated into a DataNodeConfig (zero/datanode/server.py).

zero/cli.py registers the subcommand; exit codes: 0 after SIGTERM/SIGINT, 1 when the node
cannot start, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from zero.config import parse_duration
from zero.datanode.server import DataNodeConfig, run_datanode
from zero.state import rules, validate
from zero.errors import InvalidArgumentError
from zero.security import check_tls_dir

__all__ = ["add_datanode_parser", "config_from_args", "main", "parse_labels"]


def add_datanode_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("datanode", help="run the reference data node",
                       description="Run the reference data node: key/values per tablet, served over the "
                                   "DataNode gRPC service; it joins a group through zero and takes part in "
                                   "tablet moves. Exit 1: it could not start; 2: usage.")
    p.add_argument("--zero", required=True, metavar="HOST:PORT[,...]", help="zero addresses (any of them)")
    p.add_argument("--addr", required=True, metavar="HOST:PORT",
                   help="where this node listens; zero and other data nodes dial it there")
    p.add_argument("--group", default="0", metavar="N", help="the group to join (default: zero chooses)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="keep tablets in DIR (default: in memory)")
    p.add_argument("--size-interval", default="2s", metavar="DURATION",
                   help="how often the group leader reports tablet sizes (default 2s)")
    p.add_argument("--chunk-delay", default="0", metavar="DURATION",
                   help="pause between the chunks of a tablet copy (slows moves down for demos and tests)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="where this node runs, e.g. zone=a, rack=r1, host=h1 (repeatable); zero spreads a "
                        "group's members over the placement policy's spread label (default zone)")
    p.add_argument("--log-format", default=None, metavar="json|console", help="log rendering")
    p.add_argument("--tls-dir", default=os.environ.get("ZERO_TLS_DIR") or None, metavar="DIR",
                   help="mutual TLS to zero and other data nodes, and on this node's own port: DIR holds "
                        "ca.crt, node.crt (OU=datanode, with a subjectAltName for the --addr host) and "
                        "node.key [env ZERO_TLS_DIR]")


def config_from_args(ns: argparse.Namespace) -> DataNodeConfig:
    """`zero datanode`'s flags, validated; InvalidArgumentError says which is wrong."""
    zeros = tuple(validate.address(a.strip(), "--zero") for a in ns.zero.split(",") if a.strip())
    if not zeros:
        raise InvalidArgumentError("--zero: give at least one zero address")
    addr = ns.addr.strip()
    validate.address(addr, "--addr", port_zero=True)  # port 0: any free port
    try:
        size_interval, chunk_delay = parse_duration(ns.size_interval), parse_duration(ns.chunk_delay)
    except ValueError as e:
        raise InvalidArgumentError(str(e)) from None
    if not ns.group.strip().isdigit():
        raise InvalidArgumentError(f"--group {ns.group!r} is not a group id (a whole number; 0: zero chooses)")
    group = int(ns.group)
    if size_interval <= 0:
        raise InvalidArgumentError("--size-interval must be above 0")
    if group < 0 or group >= 1 << 32:
        raise InvalidArgumentError(f"--group {group} is out of range")
    if ns.log_format not in (None, "json", "console"):
        raise InvalidArgumentError(f"--log-format: {ns.log_format!r} is not json or console")
    labels = parse_labels(getattr(ns, "label", None) or [])
    tls_dir = getattr(ns, "tls_dir", None)
    if tls_dir and check_tls_dir(tls_dir):
        raise InvalidArgumentError("--tls-dir: " + "; ".join(check_tls_dir(tls_dir)))
    return DataNodeConfig(zero=zeros, addr=addr, group=group, data_dir=ns.data_dir, size_interval=size_interval,
                          chunk_delay=chunk_delay, log_format=ns.log_format, tls_dir=tls_dir or None,
                          labels=labels)


def parse_labels(items: list[str]) -> tuple[tuple[str, str], ...]:
    """--label KEY=VALUE flags, validated, sorted by key; a key given twice is an error."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgumentError(f"--label {item!r} is not KEY=VALUE")
        if key in out:
            raise InvalidArgumentError(f"--label: {key} is given twice")
        rules.check_label(key, value, f"--label {item!r}")
        out[key] = value
    rules.check_labels(out, "--label")
    return tuple(sorted(out.items()))


def main(ns: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(ns)
    except InvalidArgumentError as e:
        print(f"zero datanode: error: {e}", file=sys.stderr)
        return 2
    return asyncio.run(run_datanode(cfg))
