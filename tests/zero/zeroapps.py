"""Helpers for tests that run zeros in-process: one started `ZeroApp`, and a cluster of
them joined through the first one. (Polling with a deadline: support.aio.until.)"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from support.aio import until
from zero.app import ZeroApp, build_node
from zero.config import RunConfig
from zero.log import Logger
from zero.metrics import Metrics
from zero.replica.node import NodeOptions, ZeroNode
from zero.replica.ports import WalStorage
from zero.replica.transport import Transport


async def one_zero(tmp_path: Path, *, logs: io.StringIO | None = None, **cfg: Any) -> ZeroApp:
    """One zero on free loopback ports (tick 10 ms) in `tmp_path/zw`, started; returns
    once it leads and has registered itself (its cluster id minted). The caller stops
    it. `cfg`: more RunConfig fields; `logs` receives its log lines."""
    app = ZeroApp(RunConfig(data_dir=str(tmp_path / "zw"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            tick=0.01, log_format="json", **cfg), log_stream=logs if logs is not None else io.StringIO())
    await app.start()
    try:
        node = app.node
        assert node is not None
        await until(lambda: node.is_leader and bool(node.state.cluster_id) and node.raft_id in node.state.zeros,
                    10.0, message="the zero to lead and register itself")
    except BaseException:
        await app.stop()
        raise
    return app


async def app_cluster(tmp_path: Path, n: int = 3, *, peer_host: str = "127.0.0.1", **cfg: Any) -> list[ZeroApp]:
    """`n` zeros on free loopback ports (tick 20 ms x 10), the first bootstrapping and
    the others joining through it; returns once every zero knows the leader and the
    state lists all of them as voters. `cfg`: more RunConfig fields (admin_token, ...);
    `peer_host`: how joiners dial the first (a name its TLS certificate carries)."""
    apps: list[ZeroApp] = []
    for i in range(n):
        rc = RunConfig(data_dir=str(tmp_path / f"z{i + 1}"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                       tick=0.02, election_ticks=10, log_format="json",
                       peer=f"{peer_host}:{apps[0].grpc_port}" if apps else "", **cfg)
        app = ZeroApp(rc, log_stream=io.StringIO())
        await app.start()
        apps.append(app)
        if i == 0:
            await until(lambda: app.node.is_leader and 1 in app.node.state._state.zeros, 20, message="bootstrap")
    await until(lambda: all(a.node.leader_id for a in apps)
                and len(apps[0].node.state._state.zeros) == n, 20, message="all joined")
    # Joiners are learners until they stayed caught up for the promotion window.
    await until(lambda: any(a.node.is_leader and len(a.node.raft_status().voters) == n
                            and not a.node.raft_status().learners for a in apps), 20, message="all voters")
    return apps


def bare_node(opts: NodeOptions, *, logger: Logger, transport: Transport | None = None,
              storage: WalStorage | None = None) -> ZeroNode:
    """A ZeroNode without a gRPC server, not started, wired as ZeroApp wires one
    (zero.app.build_node): its WAL in opts.data_dir (or `storage`), a peer transport (or
    `transport`, to serve its Raft service yourself; the node shares its metrics), the
    system clock, and the replica's leader duties; the cluster-identity duty is the
    caller's to add or run."""
    if transport is None:
        transport = Transport(log=logger, metrics=Metrics())
    return build_node(opts, transport=transport, logger=logger, metrics=transport.metrics, storage=storage)
