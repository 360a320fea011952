"""Generate the fixtures of the current on-disk formats, once per released format:

    .venv/bin/python tests/data/make_fixtures.py v1

writes tests/data/<name>/: `datadir/` (a single zero's data dir: IDENTITY, a WAL with a
snapshot and entries after it), `backup.zbk` (a backup of the same state) and
`expected.json` (what tests/zero/test_backup_restore.py checks they still hold). Never
regenerate a released directory: a new format gets a new directory beside it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys

import structlog

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from zero.ops import backup  # noqa: E402
from zero.app import build_node  # noqa: E402
from zero.metrics import Metrics  # noqa: E402
from zero.replica.duties import ensure_cluster_identity, run_leader_task  # noqa: E402
from zero.replica.node import NodeOptions  # noqa: E402
from zero.replica.transport import Transport  # noqa: E402
from zero.pb import state_pb2, zero_pb2  # noqa: E402


async def make(out: str) -> None:
    dd = os.path.join(out, "datadir")
    log = structlog.wrap_logger(logging.getLogger("fixtures"))
    metrics = Metrics()
    node = build_node(NodeOptions(data_dir=dd, my_addr="127.0.0.1:5080", tick_seconds=0.02, election_ticks=10),
                      transport=Transport(log=log, metrics=metrics), logger=log, metrics=metrics)
    node.on_leadership.append(run_leader_task(node, lambda: ensure_cluster_identity(node), "identity"))
    await node.start()
    while not (node.is_leader and 1 in node.state._state.zeros):
        await asyncio.sleep(0.01)
    tablets = []
    for g in (1, 2):
        m = (await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(
            addr=f"dn{g}:7080", group_id=g, replicas=1)))).member
        assert m is not None
        names = [f"g{g}.t{i}" for i in range(5)]
        tablets += names
        await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(
            tablets=[zero_pb2.Tablet(predicate=n, group_id=g) for n in names])))
        if g == 1:
            await node.take_snapshot()  # the rest stays in the log after the snapshot
    await node.propose(state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.UID, count=10_000)))
    await node.propose(state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(kind=zero_pb2.TIMESTAMP, count=500)))
    index, term, body = await node.consistent_snapshot()
    st = node.state._state
    expected = {"cluster_id": st.cluster_id, "tablets": sorted(tablets), "max_uid": st.max_uid,
                "max_txn_ts": st.max_txn_ts, "applied": index}
    data = backup.encode(body, cluster_id=st.cluster_id, index=index, term=term, leader_id=1,
                         created_unix_ms=1_700_000_000_000)
    await node.stop()
    os.remove(os.path.join(dd, "wal", "LOCK"))
    with open(os.path.join(out, "backup.zbk"), "wb") as f:
        f.write(data)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "v1"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    if os.path.exists(out):
        sys.exit(f"{out} exists: fixtures of a released format are never regenerated")
    os.makedirs(out)
    try:
        asyncio.run(make(out))
    except BaseException:
        shutil.rmtree(out)
        raise
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
