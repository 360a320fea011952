"""Backup and restore benchmark (not a test): python bench/backup_bench.py [--tablets N] [--members N]

A real zero (ZeroApp in this process, gRPC on loopback) holding 100,000 tablets and
1,000 data-node members (defaults) is backed up with the operator's code path
(`zero admin backup --out`: ZeroAdmin.Backup after a read barrier, streamed in 1 MiB
chunks, verified, written atomically), verified again without a cluster
(`backup --verify`), restored (`zero restore`: verify, rewrite, write a WAL with one
snapshot) and started (`zero run` on the restored dir until it serves GetState). Each
step is timed; the table also shows the file size and what dominates.

Goals (issue 12): a backup of this size in under 5 s, a restore + first start in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zero.ops import backup  # noqa: E402
from zero import cli  # noqa: E402
from zero.ops import recovery  # noqa: E402
from zero.ops.admin import run_admin  # noqa: E402
from zero.app import ZeroApp  # noqa: E402
from zero.config import RunConfig  # noqa: E402
from zero.client import ZeroClient  # noqa: E402
from zero.pb import state_pb2, zero_pb2  # noqa: E402

BACKUP_GOAL_S = 5.0
RESTORE_GOAL_S = 10.0


async def _app(data_dir: str) -> ZeroApp:
    app = ZeroApp(RunConfig(data_dir=data_dir, grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            log_format="json", rebalance_interval=0, snapshot_after=1_000_000),
                  log_stream=io.StringIO())
    await app.start()
    while not (app.node is not None and app.node.is_leader and app.node.state._state.zeros):
        await asyncio.sleep(0.01)
    return app


async def populate(app: ZeroApp, tablets: int, members: int) -> None:
    node = app.node
    assert node is not None
    groups = max(1, (members + 2) // 3)  # three replicas per group
    for i in range(members):
        await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(
            addr=f"dn{i}.example:7080", group_id=i // 3 + 1, replicas=3)))
    step = 5_000
    for lo in range(0, tablets, step):
        await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=[
            zero_pb2.Tablet(predicate=f"tablet.{i:07d}", group_id=i % groups + 1, size_bytes=i * 1000)
            for i in range(lo, min(tablets, lo + step))])), timeout=30)
    await node.propose(state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.UID, count=1 << 20)))


def admin(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_admin(cli.build_parser().parse_args(["admin", *argv]), out, err)
    return code, out.getvalue() + err.getvalue()


async def main(tablets: int, members: int, root: str) -> int:
    rows: list[tuple[str, float, str]] = []
    app = await _app(os.path.join(root, "old"))
    try:
        t0 = time.perf_counter()
        await populate(app, tablets, members)
        rows.append(("populate (proposals)", time.perf_counter() - t0, f"{tablets:,} tablets, {members:,} members"))
        out = os.path.join(root, "b.zbk")
        addr = f"127.0.0.1:{app.grpc_port}"
        t0 = time.perf_counter()
        code, text = await asyncio.to_thread(admin, ["backup", "--addr", addr, "--out", out, "--timeout", "60"])
        backup_s = time.perf_counter() - t0
        assert code == 0, text
        size = os.path.getsize(out)
        rows.append(("zero admin backup --out", backup_s, f"{size / 1e6:.1f} MB file"))
        t0 = time.perf_counter()
        index, term, body = await app.node.consistent_snapshot()  # type: ignore[union-attr]
        rows.append(("  of which: barrier + state snapshot", time.perf_counter() - t0, f"{len(body) / 1e6:.1f} MB"))
    finally:
        await app.stop()

    t0 = time.perf_counter()
    b = backup.verify(out)
    rows.append(("zero admin backup --verify", time.perf_counter() - t0, "CRC-32C + decode + invariants"))
    assert len(b.state.member_ids()) == members
    t0 = time.perf_counter()
    o = recovery.restore(out, os.path.join(root, "new"), 1)
    restore_s = time.perf_counter() - t0
    rows.append(("zero restore", restore_s, f"{o.tablets:,} tablets kept"))
    t0 = time.perf_counter()
    app2 = await _app(os.path.join(root, "new"))
    try:
        async with ZeroClient([f"127.0.0.1:{app2.grpc_port}"]) as c:
            st = await c.get_state()
        start_s = time.perf_counter() - t0
        assert sum(len(g.tablets) for g in st.groups.values()) == tablets
        rows.append(("zero run on it until GetState", start_s, "WAL open + state restore + election"))
    finally:
        await app2.stop()

    print(f"\nbackup/restore of {tablets:,} tablets and {members:,} members ({sys.platform}, Python "
          f"{sys.version.split()[0]})\n")
    print(f"{'step':<40} {'seconds':>8}  notes")
    for name, secs, note in rows:
        print(f"{name:<40} {secs:>8.2f}  {note}")
    ok_b = backup_s <= BACKUP_GOAL_S
    ok_r = restore_s + start_s <= RESTORE_GOAL_S
    print(f"\nbackup {backup_s:.2f} s (goal {BACKUP_GOAL_S:.0f} s): {'PASS' if ok_b else 'FAIL'}; "
          f"restore + first start {restore_s + start_s:.2f} s (goal {RESTORE_GOAL_S:.0f} s): "
          f"{'PASS' if ok_r else 'FAIL'}")
    return 0 if ok_b and ok_r else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tablets", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=1_000)
    ap.add_argument("--dir", default=None, help="where to put the data dirs (default: a temp dir)")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="backup-bench-", dir=a.dir)
    try:
        sys.exit(asyncio.run(main(a.tablets, a.members, root)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
