"""Replication benchmark (not a test): python bench/replication_bench.py [--dir DIR]
[--seconds S] [--processes] [--profile] [--links wire,grpc]

Three zeros over the real peer transport on loopback, fsync on, 64-byte proposals.
Measured in one run, on one filesystem (DIR, default: a temp dir under the cwd):

  1. throughput — proposals submitted inside the leader, as fast as Raft accepts them
     (`propose_batch` of serialized 64-byte zero proposals, bounded in flight), counted
     when the leader applies them. Goal (issue 21): >= 80,000 committed proposals/s
     across 3 processes.
  2. latency — one synchronous replicated write at a time (`ZeroNode.propose`: proposal,
     replication to a quorum, fdatasync on each, apply, answer). Goal (issue 21): p50 <=
     median fdatasync + 0.7 ms, with the fdatasync of a 4 KiB append measured in the same
     run on the same filesystem.

First, the peer hop alone (--hops round trips, 0 skips it): one 64-byte MsgApp and its
MsgAppResp between two transports in this process, one at a time, CPU of both ends per
round trip and the p50 — the transport's own cost, with no Raft, WAL or apply.

The zeros run a 3 s election timeout (30 ticks of 100 ms): on a shared, loaded machine a
1 s one let a flooded follower miss the leader's heartbeats and depose it mid-run, and
the throughput figure is about replication, not failover.

--links says which peer links to measure, each in turn in the same run: `wire` (the
framed TCP peer wire, what `zero run` uses; zero/replica/transport.py) and `grpc` (the
gRPC stream it falls back to), default both, so the two compare under the same load.

By default the three zeros share one process (and event loop) — on a 2-core machine this
is pessimistic, as one interpreter does all three nodes' work. --processes runs each zero
in its own process instead (the leader's process runs the load). --profile wraps the
throughput phase in pyinstrument (on the leader's process).

No peer figures here: these are in-process Raft figures with no client, which no peer
is measured against; `python -m bench` (bench/run.py) runs etcd and PySyncObj beside
zero, through one client, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
import structlog  # noqa: E402

from zero.app import build_node  # noqa: E402
from zero.metrics import Metrics  # noqa: E402
from zero.replica.duties import ensure_cluster_identity, run_leader_task  # noqa: E402
from zero.replica.node import NodeOptions, ZeroNode  # noqa: E402
from zero.pb import state_pb2, zero_pb2  # noqa: E402
from zero.replica.raft_service import add_raft_service  # noqa: E402
from zero.replica.transport import GRPC_OPTIONS, Transport  # noqa: E402
from zero.state.machine import ZeroState  # noqa: E402
from raftcore import SnapshotStatus, raftpb  # noqa: E402

PAYLOAD = 64
THROUGHPUT_GOAL = 80_000
LATENCY_SLACK_MS = 0.7
IN_FLIGHT = 4096  # proposals accepted by raft but not yet applied, at most
BATCH = 256  # proposals per propose_batch call


def _logger(name: str):  # type: ignore[no-untyped-def]
    logging.basicConfig(level=logging.WARNING)
    return structlog.wrap_logger(logging.getLogger(name)).bind(zero=name)


def payload(i: int) -> bytes:
    """A 64-byte serialized zero proposal (a one-UID lease with a dedup key)."""
    p = state_pb2.Proposal(key="", lease_ids=state_pb2.LeaseIds(kind=zero_pb2.UID, count=1))
    pad = PAYLOAD - p.ByteSize() - 2
    p.key = f"b.{i}.".ljust(pad, "x")[:pad]
    data = p.SerializeToString()
    assert len(data) == PAYLOAD, len(data)
    return data


def fdatasync_median(d: str, n: int = 200) -> float:
    path = os.path.join(d, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    buf = os.urandom(4096)
    times = []
    try:
        for _ in range(n):
            os.write(fd, buf)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


async def start_zero(d: str, name: str, peer: str = "", port: int = 0,
                     link: str = "wire") -> tuple[ZeroNode, grpc.aio.Server]:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    log, metrics = _logger(name), Metrics()
    transport = Transport(log=log, metrics=metrics)
    node = build_node(NodeOptions(data_dir=os.path.join(d, name), my_addr=f"127.0.0.1:{port}", peer=peer,
                                  tick_seconds=0.1, election_ticks=30, snapshot_every=1_000_000,
                                  transfer_on_stop=0.0),
                      transport=transport, logger=log, metrics=metrics)
    node.on_leadership.append(run_leader_task(node, lambda: ensure_cluster_identity(node), "identity"))
    add_raft_service(server, node, transport)
    if link == "wire":
        await transport.listen_wire(f"127.0.0.1:{port}", port, f"127.0.0.1:{port}", started=lambda: node.raft_started)
    await server.start()
    await node.start()
    return node, server


async def wait(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("bench: cluster did not become ready")
        await asyncio.sleep(0.01)


def proposal_pool(seconds: float) -> list[bytes]:
    """Unique dedup keys, as real proposals carry: made before the clock starts."""
    return [payload(i) for i in range(int(seconds * 160_000) // BATCH * BATCH + BATCH)]


async def throughput(node: ZeroNode, seconds: float, pool: list[bytes]) -> float:
    """Committed (applied on the leader) proposals per second."""
    batches = [pool[i:i + BATCH] for i in range(0, len(pool), BATCH)]
    applied = 0
    cond = asyncio.Event()

    def on_applied(batch: list) -> None:  # type: ignore[type-arg]
        nonlocal applied
        applied += len(batch)
        cond.set()

    node.on_applied.append(on_applied)
    raw = node._node  # submit straight to raft on the leader, as the brief asks
    assert raw is not None
    submitted = 0
    loop = asyncio.get_running_loop()
    start_applied = applied
    t0 = loop.time()
    end = t0 + seconds
    while loop.time() < end:
        if submitted - applied >= IN_FLIGHT:
            cond.clear()
            try:
                await asyncio.wait_for(cond.wait(), 5)
            except TimeoutError:
                pass
            if not node.is_leader:
                # Proposals in flight die with the leadership (a loaded machine can starve
                # the leader past the election timeout); the figure would be meaningless.
                raise SystemExit("bench: the leader lost leadership during the throughput phase; run again")
            continue
        datas = batches[(submitted // BATCH) % len(batches)]
        await raw.propose_batch(datas)
        submitted += len(datas)
        await asyncio.sleep(0)
    elapsed = loop.time() - t0
    rate = (applied - start_applied) / elapsed
    while applied < submitted:  # drain
        cond.clear()
        try:
            await asyncio.wait_for(cond.wait(), 10)
        except TimeoutError:
            break
    node.on_applied.remove(on_applied)
    return rate


async def latency(node: ZeroNode, n: int) -> list[float]:
    out = []
    for i in range(n):
        p = state_pb2.Proposal.FromString(payload(i))
        p.key = ""
        t = time.perf_counter()
        await node.propose(p)
        out.append(time.perf_counter() - t)
    return out


async def load(node: ZeroNode, args: argparse.Namespace, fsync_s: float,
               pool: list[bytes]) -> dict:  # type: ignore[type-arg]
    await latency(node, 50)  # warm up
    c0 = time.process_time()
    lat = await latency(node, args.latency_writes)
    cpu_write = (time.process_time() - c0) / args.latency_writes
    prof = None
    if args.profile:
        from pyinstrument import Profiler
        prof = Profiler(async_mode="enabled")
        prof.start()
    c0, w0 = time.process_time(), time.monotonic()
    rate = await throughput(node, args.seconds, pool)
    cpu_share = (time.process_time() - c0) / (time.monotonic() - w0)
    if prof is not None:
        prof.stop()
        print(prof.output_text(unicode=True, color=False, show_all=False))
    lat.sort()
    return {
        "throughput": rate,
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3,
        "fsync_ms": fsync_s * 1e3,
        # CPU of this process (all three zeros in one process; the leader's in --processes):
        # robust to a loaded machine, where wall-clock figures are not.
        "cpu_per_write_ms": cpu_write * 1e3,
        "cpu_per_proposal_us": cpu_share / rate * 1e6 if rate else 0.0,
    }


async def in_process(d: str, args: argparse.Namespace, link: str) -> dict:  # type: ignore[type-arg]
    os.makedirs(d, exist_ok=True)
    fsync_s = fdatasync_median(d)
    # Made before the zeros start: building it blocks the event loop for seconds, long
    # enough for the followers to depose a leader that stops sending heartbeats.
    pool = proposal_pool(args.seconds)
    n1, s1 = await start_zero(d, "z1", link=link)
    await wait(lambda: n1.is_leader and 1 in n1.state._state.zeros)
    n2, s2 = await start_zero(d, "z2", n1.opts.my_addr, link=link)
    n3, s3 = await start_zero(d, "z3", n1.opts.my_addr, link=link)
    await wait(lambda: len(n1.raft_status().voters) == 3 and not n1.raft_status().learners)
    try:
        return await load(n1, args, fsync_s, pool)
    finally:
        for n, s in ((n1, s1), (n2, s2), (n3, s3)):
            await n.stop()
            await s.stop(0)


async def child(args: argparse.Namespace) -> None:
    """One zero of the --processes run; z1 runs the load and prints the figures."""
    pool = proposal_pool(args.seconds) if args.child == "z1" else []  # before the zero starts (in_process)
    node, server = await start_zero(args.dir, args.child, args.peer, link=args.links)
    print(json.dumps({"addr": node.opts.my_addr}), flush=True)
    if args.child == "z1":
        fsync_s = fdatasync_median(args.dir)
        await wait(lambda: node.is_leader, 30)
        await wait(lambda: len(node.raft_status().voters) == 3 and not node.raft_status().learners, 60)
        res = await load(node, args, fsync_s, pool)
        print(json.dumps(res), flush=True)
    else:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await node.stop()
    await server.stop(0)


def multi_process(d: str, args: argparse.Namespace, link: str) -> dict:  # type: ignore[type-arg]
    base = [sys.executable, __file__, "--dir", d, "--seconds", str(args.seconds), "--links", link,
            "--latency-writes", str(args.latency_writes)] + (["--profile"] if args.profile else [])
    p1 = subprocess.Popen(base + ["--child", "z1"], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert p1.stdout is not None
    addr = json.loads(p1.stdout.readline())["addr"]
    others = [subprocess.Popen(base + ["--child", f"z{i}", "--peer", addr], stdout=subprocess.PIPE,
                               stdin=subprocess.PIPE, text=True) for i in (2, 3)]
    res: dict = {}  # type: ignore[type-arg]
    for line in p1.stdout:
        if line.startswith("{") and "throughput" in line:
            res = json.loads(line)
            break
        print(line, end="")
    for p in [p1] + others:
        assert p.stdin is not None
        p.stdin.close()
    for p in [p1] + others:
        p.wait(timeout=30)
    return res


class _Host:
    """A stand-in zero for the hop figure: a member of one cluster that answers every
    MsgApp it is given with a MsgAppResp (through its own transport), as a follower would."""

    def __init__(self, rid: int, addrs: dict[int, str], cid: str, link: str) -> None:
        self.raft_id, self.join_peers, self.cluster_id = rid, {}, cid
        self.state = ZeroState()
        self.state.apply(1, state_pb2.Proposal(set_cluster_id=state_pb2.SetClusterId(cluster_id=cid)))
        for i, (r, a) in enumerate(sorted(addrs.items())):
            self.state.apply(2 + i, state_pb2.Proposal(add_zero=state_pb2.AddZero(raft_id=r, addr=a)))
        self.transport = Transport(log=_logger(f"hop{rid}"), metrics=Metrics())
        self.transport.start(self)  # type: ignore[arg-type]
        self.got = asyncio.Event()
        self.link = link

    def step_peer(self, m: raftpb.Message) -> None:
        if m.type == raftpb.MsgApp:
            self.transport.send(raftpb.Message(type=raftpb.MsgAppResp, to=m.from_, from_=self.raft_id, term=m.term,
                                               index=m.index + len(m.entries)))
        else:
            self.got.set()

    def report_unreachable(self, rid: int) -> None: ...
    def peer_lost(self, rid: int) -> None: ...
    def report_snapshot(self, rid: int, status: SnapshotStatus) -> None: ...
    def mark_removed(self, reason: str) -> None: ...


async def hop_cost(link: str, n: int) -> dict:  # type: ignore[type-arg]
    """CPU (this process: both ends) per round trip of one 64-byte MsgApp and its
    MsgAppResp between two transports on loopback, one at a time: what each peer hop of
    a replicated write costs, without Raft, the WAL or a state machine."""
    servers, hosts = [], []
    ports = []
    for _ in range(2):
        srv = grpc.aio.server(options=GRPC_OPTIONS)
        ports.append(srv.add_insecure_port("127.0.0.1:0"))
        servers.append(srv)
    addrs = {1: f"127.0.0.1:{ports[0]}", 2: f"127.0.0.1:{ports[1]}"}
    for rid, srv in zip((1, 2), servers):
        h = _Host(rid, addrs, "hop-bench", link)
        add_raft_service(srv, type("Started", (), {"raft_id": rid, "raft_started": True})(), h.transport)  # type: ignore[arg-type]
        if link == "wire":
            await h.transport.listen_wire(addrs[rid], ports[rid - 1], addrs[rid], started=lambda: True)
        await srv.start()
        hosts.append(h)
    a, b = hosts
    a.transport.set_peers({2: addrs[2]})
    b.transport.set_peers({1: addrs[1]})
    entry = raftpb.Entry(index=1, term=1, data=payload(0))

    async def once(i: int) -> None:
        a.got.clear()
        a.transport.send(raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=i, commit=i,
                                        entries=[entry]))
        await asyncio.wait_for(a.got.wait(), 5)

    try:
        while not (a.transport.peer_up(2) and b.transport.peer_up(1)):  # both links up (and warm)
            try:
                await once(0)
            except TimeoutError:
                pass
        for i in range(100):
            await once(i)
        lat = []
        c0 = time.process_time()
        for i in range(n):
            t = time.perf_counter()
            await once(i)
            lat.append(time.perf_counter() - t)
        cpu = (time.process_time() - c0) / n
    finally:
        for h in hosts:
            await h.transport.stop()
        for srv in servers:
            await srv.stop(0)
    return {"cpu_us": cpu * 1e6, "p50_us": statistics.median(lat) * 1e6}


def report(title: str, r: dict) -> None:  # type: ignore[type-arg]
    if not r:
        print(f"\n{title}\n  no figures: the run failed (see above); run again")
        return
    ok_t = r["throughput"] >= THROUGHPUT_GOAL
    ok_l = r["p50_ms"] <= r["fsync_ms"] + LATENCY_SLACK_MS
    print(f"\n{title}")
    print(f"  {'committed proposals/s':34} {r['throughput']:>10,.0f}   goal >= {THROUGHPUT_GOAL:,}   "
          f"{'PASS' if ok_t else 'FAIL'}")
    print(f"  {'sync replicated write p50 (ms)':34} {r['p50_ms']:>10.2f}   goal <= {r['fsync_ms']:.2f} + "
          f"{LATENCY_SLACK_MS} = {r['fsync_ms'] + LATENCY_SLACK_MS:.2f}   {'PASS' if ok_l else 'FAIL'}")
    print(f"  {'sync replicated write p99 (ms)':34} {r['p99_ms']:>10.2f}")
    print(f"  {'median fdatasync, 4 KiB (ms)':34} {r['fsync_ms']:>10.2f}")
    print(f"  {'CPU per sync write (ms)':34} {r['cpu_per_write_ms']:>10.3f}   (this process: all 3 zeros in-process, "
          f"the leader's with --processes)")
    print(f"  {'CPU per committed proposal (us)':34} {r['cpu_per_proposal_us']:>10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--latency-writes", type=int, default=500)
    ap.add_argument("--processes", action="store_true", help="also run each zero in its own process")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--links", default="wire,grpc", help="peer links to measure, in turn: wire, grpc")
    ap.add_argument("--hops", type=int, default=2000, help="round trips of the peer-hop figure (0: skip it)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--peer", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(child(args))
        return
    d = tempfile.mkdtemp(prefix="replication-bench-", dir=args.dir or os.getcwd())
    links = [x for x in args.links.split(",") if x]
    if not links or set(links) - {"wire", "grpc"}:
        ap.error("--links takes wire, grpc or both")
    if args.hops:
        print(f"\npeer hop: one 64-byte MsgApp and its MsgAppResp between two transports in this process, "
              f"{args.hops} round trips one at a time")
        for link in links:
            h = asyncio.run(hop_cost(link, args.hops))
            print(f"  {link:5} links: CPU per round trip {h['cpu_us']:7.0f} us (both ends), p50 {h['p50_us']:7.0f} us")
    try:
        for link in links:
            report(f"3 zeros in one process (one event loop does all three nodes' work), {link} links",
                   asyncio.run(in_process(os.path.join(d, f"inproc-{link}"), args, link)))
            if args.processes:
                os.makedirs(os.path.join(d, f"procs-{link}"))
                report(f"3 zeros in 3 processes, {link} links", multi_process(os.path.join(d, f"procs-{link}"), args, link))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
