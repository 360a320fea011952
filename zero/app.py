"""ZeroApp: one zero, wired — the data-dir lock, ZeroNode, Leases, the move driver, the
gRPC server (Zero, ZeroAdmin, Raft, health, reflection) and the HTTP server, built in
one place and started and stopped in order (zero/runner.py runs it as a process).

Start: lock the data dir (zero/datadir.py), read its identity, bind both ports
(zero/net.py), (a new zero with --peer) wait for the peer to answer as a zero
(zero/client/probe.py), start the node (WAL recovery or join), then serve. Any failure
before serving is a StartupError: one line, exit 1. A stop while starting undoes what
the start did.
Stop: report NOT_SERVING, stop accepting calls and let in-flight ones finish (grace),
close HTTP, then stop the node, which syncs and closes the WAL.
With --tls-dir the HTTP port is HTTPS, and SIGHUP (or a change of the files, polled)
reloads the certificates for new connections (zero/security/reload.py, outbound.py);
--live-addr serves /live alone over plain HTTP, from the moment its port is bound.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import sys
from typing import TextIO

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raftcore import StorageError

from zero.ops import recovery
from zero import security
from zero.client.probe import NotAZeroError, await_zero
from zero.config import RunConfig
from zero.datadir import DataDirError, DataDirLock
from zero.errors import ZeroError
from zero.frontdoor.http import health_report, make_app
from zero.replica.identity import load_identity
from zero.leader.leases import Leases
from zero.log import Logger, make_logger
from zero.metrics import Metrics
from zero.net import bind_tcp, listen_refusal
from zero.security.outbound import OutboundTls
from zero.leader.datanodes import DIAL_OPTIONS
from zero.leader.driver import MoveDriver, MoveOptions
from zero.leader.move_metrics import MoveMetrics
from zero.replica.duties import ensure_cluster_identity, run_leader_task
from zero.leader.oracle import Oracle
from zero.frontdoor.oracle_service import OracleHub
from zero.replica.node import NodeOptions, ZeroNode
from zero.replica.ports import Clock, PeerTransport, SystemClock, WalStorage
from zero.replica.wal import open_wal
from zero.pb import zero_pb2_grpc
from zero.replica.raft_service import add_raft_service
from zero.replica.transport import GRPC_OPTIONS, Transport
from zero.frontdoor.admin_service import ZeroAdminService
from zero.frontdoor.forwarding import NodeSlot
from zero.frontdoor.interceptor import Interceptor
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.stream import MembershipHub
from zero.frontdoor.wire import MAX_MESSAGE_BYTES
from zero.frontdoor.zero_service import ZeroService

__all__ = ["ZeroApp", "StartupError", "build_node"]

HEALTH_PERIOD = 0.5  # seconds between gRPC health refreshes
GRPC_GRACE = 2.0  # seconds in-flight calls get on shutdown
HTTP_GRACE = 1.0
SERVICES = ("zero.v1.Zero", "zero.v1.ZeroAdmin")
TLS_POLL = 2.0  # seconds between looks at the --tls-dir files (a change settled for one look is reloaded)


class StartupError(Exception):
    """zero cannot start (corrupt or locked data dir, port in use): exit 1."""


def build_node(opts: NodeOptions, *, transport: PeerTransport, logger: Logger, metrics: Metrics,
               storage: WalStorage | None = None, clock: Clock | None = None,
               rng: random.Random | None = None) -> ZeroNode:
    """A ZeroNode on `transport` and `storage` (default: its WAL opened, and locked, in
    opts.data_dir) and `clock` (default: the system clock), with the replica's own leader
    duties: promoting caught-up learners, raising the leases after a WAL repair (a no-op
    without one). ZeroApp and the tests that run bare nodes build them here; the
    cluster-identity duty is added by the caller. The node owns the storage from now on:
    stop() closes it. `rng` (a simulation's seeded one; None: OS entropy) draws the
    node's incarnation, election timeouts, failover delays and the cluster id it mints."""
    node = ZeroNode(opts, transport=transport, storage=storage or open_wal(opts.data_dir, logger),
                    clock=clock or SystemClock(), logger=logger, metrics=metrics, rng=rng)
    node.on_leadership.append(run_leader_task(node, node.membership.promote_learners, "promote-learners"))
    node.on_leadership.append(run_leader_task(node, node.raise_leases_after_repair, "leases-after-repair"))
    return node


class ZeroApp:
    def __init__(self, cfg: RunConfig, *, log_stream: TextIO | None = None) -> None:
        self.cfg = cfg
        self._log_stream = log_stream
        self.log: Logger | None = None  # made first thing in a start (the raft id comes from the data dir)
        self.node: ZeroNode | None = None
        self._unstarted: ZeroNode | None = None  # built, not started yet: stop() closes its WAL
        self.leases: Leases | None = None
        self.liveness: Liveness | None = None
        self.hub: MembershipHub | None = None
        self._move_seen: tuple[int, float] | None = None  # (move id, when this zero first saw it)
        self.moves: MoveDriver | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.grpc_port = 0
        self.http_port = 0
        self._runner: web.AppRunner | None = None
        self._http_socks: list[socket.socket] = []  # bound before the node starts, served after
        self._live_runner: web.AppRunner | None = None  # --live-addr
        self.live_port = 0
        self.tls: security.ServerTls | None = None  # --tls-dir: the certificates served, reloadable
        self.tls_poll = TLS_POLL
        self._outbound: OutboundTls | None = None  # --tls-dir: the credentials of the channels zero opens
        self._data_dir_lock: DataDirLock | None = None  # held from the start of _start until stop
        self._interceptor: Interceptor | None = None  # set in _start; stop() runs after a failed start too
        self._node_slot = NodeSlot()  # the node the interceptor serves: set once it runs (see _start)
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: bool | None = None
        self.failed = asyncio.Event()  # the node stopped on its own (e.g. a failed fsync)

    # -- start ----------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.cfg
        try:
            self._data_dir_lock = DataDirLock.acquire(cfg.data_dir)
        except DataDirError as e:
            raise StartupError(str(e)) from None
        try:
            ident = load_identity(cfg.data_dir)
        except StorageError as e:
            raise StartupError(str(e)) from None
        holder: dict[str, ZeroNode] = {}
        if cfg.force_new_cluster and ident is None:
            raise StartupError(f"--force-new-cluster needs the data dir of a zero that ran before; "
                               f"{cfg.data_dir} has no IDENTITY")
        known_id = ident.raft_id if ident is not None else (cfg.raft_id or (0 if cfg.peer else 1))
        self.log = make_logger(raft_id=lambda: holder["node"].raft_id or known_id if "node" in holder else known_id,
                               fmt=cfg.log_format, stream=self._log_stream,
                               term=lambda: holder["node"].term if "node" in holder else 0)

        if cfg.force_new_cluster:
            self._force_new_cluster(self.log)
        metrics = Metrics()
        tls = None
        if cfg.tls_dir:
            try:
                tls = self.tls = security.ServerTls(cfg.tls_dir)
            except security.TlsError as e:
                raise StartupError(str(e)) from None
        outbound = self._outbound = (OutboundTls(tls, self.log, datanode_options=DIAL_OPTIONS) if tls is not None
                                     else None)
        creds = outbound.credentials if outbound is not None else None
        # The interceptor is built with the server, before the node exists: it serves the
        # node put in self._node_slot once the node runs. With --tls-dir its channels to the
        # leader use the credentials current when each is made (a reload replaces them).
        self._interceptor = Interceptor(
            self._node_slot, metrics=metrics, admin_token=cfg.admin_token, logger=self.log,
            channel_factory=outbound.dial if outbound is not None else None,
            authorize=security.authorize if tls is not None else None)
        if outbound is not None:
            outbound.on_reload.append(self._interceptor.forwarder.renew)
        # The peer transport's options (message sizes for snapshot chunks and batches),
        # and no SO_REUSEPORT: a second zero must not share the port silently.
        options = dict(GRPC_OPTIONS)
        options.update({"grpc.max_receive_message_length": max(MAX_MESSAGE_BYTES, options.get(
            "grpc.max_receive_message_length", 0)), "grpc.so_reuseport": 0})
        # A busy port is found with a plain bind first: gRPC would log its own error line
        # (add_port.cc) before ours. Only "in use" and "permission denied" are final here;
        # anything else is left for gRPC to judge.
        refusal = listen_refusal(cfg.grpc_addr)
        if refusal:
            raise StartupError(f"cannot listen for gRPC on {cfg.grpc_addr}: {refusal}")
        server = grpc.aio.server(options=list(options.items()), interceptors=[self._interceptor])
        self.grpc_server = server
        try:
            self.grpc_port = (server.add_secure_port(cfg.grpc_addr, tls.server_credentials()) if tls is not None
                              else server.add_insecure_port(cfg.grpc_addr))
        except RuntimeError as e:
            raise StartupError(f"cannot listen for gRPC on {cfg.grpc_addr}: {e}") from None
        if not self.grpc_port:
            raise StartupError(f"cannot listen for gRPC on {cfg.grpc_addr} (address in use?)")
        my = cfg.my or f"localhost:{self.grpc_port}"
        # The HTTP port is bound (not yet served) before the node starts: a zero holds
        # both ports and its data dir before a join makes it a member of a cluster, so a
        # busy port can never leave the cluster with a half-joined zero (a learner that
        # will never come up; promoted, it would have cost a one-zero cluster its quorum).
        try:
            http_socks = bind_tcp(cfg.http_addr)
        except OSError as e:
            raise StartupError(f"cannot listen for HTTP on {cfg.http_addr}: {e.strerror or e}") from None
        self._http_socks = http_socks
        self.http_port = int(http_socks[0].getsockname()[1])
        if cfg.live_addr:
            await self._serve_live(cfg.live_addr)

        join_timeout = cfg.join_timeout
        if cfg.peer and ident is None:  # a join: the peer must answer as a zero first
            try:
                join_timeout = await await_zero(cfg.peer, timeout=cfg.join_timeout, credentials=creds, log=self.log)
            except NotAZeroError as e:
                raise StartupError(str(e)) from None
        transport = Transport(log=self.log, metrics=metrics, tls=tls)
        if outbound is not None:
            outbound.follow(transport)  # peer channels and the join call
        try:
            node = self._unstarted = build_node(NodeOptions(
                data_dir=cfg.data_dir, my_addr=my, raft_id=cfg.raft_id, tick_seconds=cfg.tick,
                election_ticks=cfg.election_ticks, snapshot_every=cfg.snapshot_after, replicas=cfg.replicas,
                peer=cfg.peer, join_timeout=join_timeout), transport=transport, logger=self.log, metrics=metrics)
        except StorageError as e:  # the WAL (CorruptionError included: the message names the file)
            raise StartupError(str(e)) from None
        holder["node"] = node
        leases = self.leases = Leases(node)
        node.on_leadership.append(leases.leadership_changed)
        liveness = self.liveness = Liveness(node, window=cfg.liveness_window,
                                            channel_factory=outbound.dial if outbound is not None else None)
        node.on_leadership.append(liveness.on_leadership)
        hub = self.hub = MembershipHub(node, overlay=liveness.overlay)
        node.on_applied.append(hub.on_applied)
        node.on_state_reset.append(hub.on_state_reset)
        liveness.on_flags_changed = hub.bump
        liveness.start_mirror()
        if outbound is not None:
            outbound.on_reload.append(liveness.renew_channels)
        node.on_leadership.append(run_leader_task(node, lambda: ensure_cluster_identity(node), "cluster-identity"))
        self.moves = MoveDriver(node, leases, liveness, options=MoveOptions(
            rebalance_interval=cfg.rebalance_interval, move_timeout=cfg.move_timeout,
            backoff=cfg.move_backoff, backoff_max=cfg.move_backoff_max),
            metrics=MoveMetrics(metrics.registry, lambda: node.state.state_copy()),
            dial=outbound.dial_datanode if outbound is not None else None)
        node.on_leadership.append(run_leader_task(node, self.moves.leader_duty, "tablet-moves"))
        oracle = self.oracle = Oracle(node, leases, liveness, liveness_window=cfg.liveness_window,
                                      retention=cfg.txn_retention, log=self.log, metrics=metrics)
        oracle_hub = self.oracle_hub = OracleHub(oracle)
        oracle.sinks.append(oracle_hub.publish)
        node.on_leadership.append(oracle.on_leadership)
        node.on_leadership.append(oracle_hub.on_leadership)
        node.on_applied.append(oracle.on_applied)
        leases.on_handed_out.append(oracle.handed_out)
        node.on_leadership.append(run_leader_task(node, oracle.leader_duty, "oracle"))

        # Every service is registered and serving before the node starts: a joining
        # zero must hear from the leader as soon as the cluster has admitted it. Until
        # the node runs, the interceptor answers the Zero services with UNAVAILABLE.
        zero_pb2_grpc.add_ZeroServicer_to_server(
            ZeroService(node, leases, liveness, hub, oracle, oracle_hub, admin_token=cfg.admin_token,
                        replicas=cfg.replicas), server)
        zero_pb2_grpc.add_ZeroAdminServicer_to_server(ZeroAdminService(node, liveness, self.moves, oracle), server)
        add_raft_service(server, node, transport)
        # The peer wire: a free port of the gRPC host, named in the gRPC handshake (zero/replica/transport.py).
        await transport.listen_wire(cfg.grpc_addr, self.grpc_port, my, started=lambda: node.raft_started)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        await self._set_health(False)
        await server.start()
        try:
            await node.start()
        except StorageError as e:  # CorruptionError included: the message names the file
            raise StartupError(str(e)) from None
        except ZeroError as e:
            raise StartupError(str(e)) from None
        self.node, self._unstarted = node, None
        self._node_slot.node = node

        runner = web.AppRunner(make_app(node, self.liveness, admin_token=cfg.admin_token, grpc_addr=cfg.grpc_addr,
                                        grpc_port=self.grpc_port, grpc_creds=self._outbound, oracle=self.oracle),
                               access_log=None, shutdown_timeout=HTTP_GRACE)
        await runner.setup()
        self._runner = runner
        for sock in http_socks:  # HTTPS with --tls-dir; the site owns the socket now
            await web.SockSite(runner, sock, ssl_context=tls.http_context if tls is not None else None).start()
        self._http_socks = []
        self._tasks.append(asyncio.get_running_loop().create_task(self._health_loop(), name="zero-health"))
        if outbound is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(outbound.watch(lambda: self.tls_poll),
                                                                      name="zero-tls-watch"))
        self.log.info("zero is running", grpc_addr=cfg.grpc_addr, grpc_port=self.grpc_port,
                      http_addr=cfg.http_addr, http_port=self.http_port, my=my, data_dir=cfg.data_dir,
                      replicas=cfg.replicas, tick_seconds=cfg.tick, election_ticks=cfg.election_ticks,
                      snapshot_after=cfg.snapshot_after, admin_token_set=bool(cfg.admin_token),
                      tls_dir=cfg.tls_dir, https=tls is not None, live_addr=cfg.live_addr,
                      live_port=self.live_port or None,
                      **({"tls_serial": f"{tls.config.serial:x}", "tls_not_after": tls.config.not_after}
                         if tls is not None else {}))

    async def _serve_live(self, addr: str) -> None:
        """--live-addr: /live alone over plain HTTP, served as soon as it is bound (the
        event loop answers also while the WAL is recovered or a join waits)."""
        try:
            socks = bind_tcp(addr)
        except OSError as e:
            raise StartupError(f"cannot listen for /live on {addr}: {e.strerror or e}") from None
        self.live_port = int(socks[0].getsockname()[1])

        async def live(_request: web.Request) -> web.Response:
            node = self.node
            return web.json_response({"live": True, "raft_id": node.raft_id if node is not None else 0})

        app = web.Application()
        app.router.add_get("/live", live)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_GRACE)
        try:
            await runner.setup()
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self._live_runner = runner
        for i, sock in enumerate(socks):
            try:
                await web.SockSite(runner, sock).start()
            except BaseException:
                for rest in socks[i:]:
                    rest.close()
                raise

    # -- TLS reload ---------------------------------------------------------------------------------
    def reload_tls(self, reason: str) -> bool:
        """Re-read --tls-dir (SIGHUP, or the files changed): True when new connections
        now use new certificates. A bad set of files is logged as an error and the old
        certificates stay (zero/security/outbound.py OutboundTls.reload)."""
        if self._outbound is None:
            if self.log is not None:
                self.log.info("TLS reload asked before the certificates were loaded; nothing to do", reason=reason)
            return False
        return self._outbound.reload(reason)

    def _force_new_cluster(self, log: Logger) -> None:
        """--force-new-cluster: rewrite the data dir into a new single-zero cluster
        (zero/ops/recovery.py), loudly: it is the last resort after losing a majority."""
        cfg = self.cfg
        try:
            o = recovery.force_new_cluster(cfg.data_dir, margin=cfg.lease_margin, log=log)
        except (ZeroError, StorageError) as e:
            raise StartupError(f"--force-new-cluster: {e}") from None
        if o is None:
            return
        log.warning("FORCED A NEW CLUSTER from this data dir: the old zeros are removed and can never "
                    "rejoin; join new zeros with --peer", old_cluster_id=o.old_cluster_id,
                    cluster_id=o.cluster_id, removed_zeros=list(o.removed_zeros), max_uid=o.max_uid,
                    max_txn_ts=o.max_txn_ts, old_wal=o.old_wal)
        bar = "!" * 78
        print(f"{bar}\nzero: WARNING: --force-new-cluster rewrote {cfg.data_dir} into a NEW cluster.\n"
              f"{o.text()}\nRemove --force-new-cluster from the command line / environment now.\n{bar}",
              file=sys.stderr, flush=True)

    # -- health -----------------------------------------------------------------------------------
    async def _set_health(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICES):
            await self.health.set(name, status)

    async def _health_loop(self) -> None:
        node = self.node
        assert node is not None
        while True:
            if node.fatal is not None:
                self.failed.set()
                await self._set_health(False)
                return
            ok, _ = health_report(node)
            await self._set_health(ok)
            if node.is_leader and self.liveness is not None and self.hub is not None:
                changed = self.liveness.changed()
                if changed:
                    self.hub.notify_members(changed)
            self._update_gauges(node)
            await asyncio.sleep(HEALTH_PERIOD)

    def _update_gauges(self, node: ZeroNode) -> None:
        """Gauges the alert rules read (deploy/prometheus/alerts.yml): unhealthy data
        nodes as the leader judges them, and the age of the move in progress."""
        m = node.metrics
        m.members_unhealthy.set(self.liveness.unhealthy() if node.is_leader and self.liveness else 0)
        active = node.state.active_move()
        if active is None:
            self._move_seen = None
            m.move_oldest_seconds.set(0)
        else:
            if self._move_seen is None or self._move_seen[0] != active.move_id:
                self._move_seen = (active.move_id, time.monotonic())
            m.move_oldest_seconds.set(time.monotonic() - self._move_seen[1])

    # -- stop -----------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop serving and flush; safe to call more than once and after a failed start."""
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        if self.grpc_server is not None:
            try:
                await self._set_health(False)
            except Exception:
                pass
        if self.node is not None:
            # While the peer transport still serves: hand leadership over first.
            await self.node.hand_over_leadership()
        stops = []
        if self.grpc_server is not None:
            stops.append(self.grpc_server.stop(GRPC_GRACE))
            self.grpc_server = None
        if self._runner is not None:
            stops.append(self._runner.cleanup())
            self._runner = None
        if self._live_runner is not None:
            stops.append(self._live_runner.cleanup())
            self._live_runner = None
        for sock in self._http_socks:
            sock.close()
        self._http_socks = []
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
        if self._interceptor is not None:
            await self._interceptor.close()
        if self.moves is not None:
            await self.moves.close()
        if self._outbound is not None:
            await self._outbound.close()
        if self._unstarted is not None:  # a start that failed before the node ran
            await self._unstarted.stop()
            self._unstarted = None
        if self.node is not None:
            node, self.node = self.node, None
            self._node_slot.node = None
            await node.stop()
            if self.log is not None:
                self.log.info("zero stopped", applied=node.applied)
        if self._data_dir_lock is not None:
            self._data_dir_lock.release()
            self._data_dir_lock = None
