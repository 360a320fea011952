"""One kvstore node process (raftexample's main.go).

    python -m examples.kvstore --id 1 \
        --cluster 127.0.0.1:12380,127.0.0.1:12382,127.0.0.1:12384 \
        --http 127.0.0.1:12379 --data-dir kvstore-data/node-1

`--cluster` lists every node's raft address; node i is the i-th (ids start at 1).
Run it again with the same --id and --data-dir to restart the node with its state.
SIGINT or SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from raftcore import StorageError

from .httpapi import make_app
from .raftnode import RaftNode


def _addr(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host or "127.0.0.1", int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.kvstore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--id", type=int, required=True, help="this node's raft id (1-based position in --cluster)")
    p.add_argument("--cluster", required=True, help="comma-separated raft HOST:PORT of every node")
    p.add_argument("--http", type=_addr, required=True, help="HOST:PORT of the key-value HTTP API")
    p.add_argument("--data-dir", default=None, help="WAL and snapshots (default: kvstore-data/node-<id>)")
    p.add_argument("--tick-ms", type=int, default=100, help="raft tick interval (default 100)")
    p.add_argument("--election-tick", type=int, default=10, help="ticks before a follower campaigns (default 10)")
    p.add_argument("--snapshot-count", type=int, default=1000, help="applied entries between snapshots")
    p.add_argument("--catchup-entries", type=int, default=100, help="entries kept behind a snapshot")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    try:
        args.peers = {i: _addr(a) for i, a in enumerate(args.cluster.split(","), 1)}
    except argparse.ArgumentTypeError as e:
        p.error(f"--cluster: {e}")
    if args.id not in args.peers:
        p.error(f"--id {args.id} is not in --cluster (ids are 1..{len(args.peers)})")
    if args.data_dir is None:
        args.data_dir = f"kvstore-data/node-{args.id}"
    return args


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    rn = RaftNode(args.id, args.peers, args.data_dir, tick_interval=args.tick_ms / 1000,
                  election_tick=args.election_tick, snapshot_count=args.snapshot_count,
                  catchup_entries=args.catchup_entries)
    runner = web.AppRunner(make_app(rn), access_log=None)
    host, port = args.http
    try:
        await rn.start()
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
    except (OSError, StorageError) as e:  # a port in use, a data dir locked or corrupt
        logging.error("node %d: cannot start: %s", args.id, e)
        await runner.cleanup()
        await rn.stop()
        return 1
    logging.info("node %d: serving http://%s:%d, raft on %s:%d, data in %s",
                 args.id, host, port, *args.peers[args.id], args.data_dir)

    assert rn.done is not None
    stopping = asyncio.create_task(stop.wait())
    either: list[asyncio.Future[Any]] = [stopping, rn.done]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    failed = rn.done.done() and rn.done.exception() is not None
    if failed:
        # A storage failure: raftcore's contract says end the process, never retry.
        logging.error("node %d: raft loop failed", args.id, exc_info=rn.done.exception())
    stopping.cancel()
    logging.info("node %d: stopping", args.id)
    await runner.cleanup()
    await rn.stop()
    logging.info("node %d: stopped", args.id)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
