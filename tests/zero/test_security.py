"""Mutual TLS, certificate roles and the admin token (zero/security/, docs/DESIGN.md
"Security"). The tests make a CA and certificates with support.tls (`cryptography`): one per
role (OU zero, datanode, admin), plus one from a foreign CA.

- plaintext clients, clients without a certificate and clients of another CA are refused;
- a data-node certificate may call Zero but not ZeroAdmin nor Raft (PERMISSION_DENIED),
  nor force a tablet; an admin certificate may call ZeroAdmin (with the token); a wrong
  token is refused and logged without its value;
- the admin CLI and the reference data node over TLS, a tablet move included (zero dials
  the data nodes with its certificate, they copy to each other with theirs);
- three zeros form a cluster over TLS, forward through followers, and fail over.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import types
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest

cryptography = pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from zero import cli  # noqa: E402
from zero import security  # noqa: E402
from zero.ops.admin import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, run_admin  # noqa: E402
from zero.app import ZeroApp  # noqa: E402
from zero.config import RunConfig  # noqa: E402
from zero.client import ZeroClient  # noqa: E402
from zero.datanode.server import DataNode, DataNodeConfig  # noqa: E402
from zero.errors import PermissionDeniedError  # noqa: E402
from zero.pb import datanode_pb2, datanode_pb2_grpc, zero_pb2, zero_pb2_grpc  # noqa: E402
from zero.pb import raft_transport_pb2 as tpb  # noqa: E402
from zero.pb import raft_transport_pb2_grpc as tgrpc  # noqa: E402

from support.aio import until  # noqa: E402
from support.tls import CA  # noqa: E402

TOKEN = "adm1n-t0ken-value"
WRONG = "guessed-t0ken-value"
SC = grpc.StatusCode


# -- a CA and certificates ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A --tls-dir per role (OU zero, datanode, admin), one without a role, and one of
    another CA."""
    base = tmp_path_factory.mktemp("pki")
    ca = CA()
    for role in ("zero", "datanode", "admin"):
        ca.write(base / role, f"{role}-1", role)
    ca.write(base / "none", "no-role", None)
    CA("another CA").write(base / "foreign", "intruder", "admin")
    return {d.name: str(d) for d in base.iterdir()}


def _creds(d: str) -> grpc.ChannelCredentials:
    return security.load_tls(d).channel_credentials()


def _ca_only(d: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=security.load_tls(d).ca)




async def _code(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    return ei.value.code()


async def _drain(stream: Any) -> list[Any]:
    return [r async for r in stream]


def _config(tmp_path: Path, name: str, tls_dir: str, **kw: Any) -> RunConfig:
    return RunConfig(data_dir=str(tmp_path / name), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                     tick=0.02, election_ticks=10, log_format="json", tls_dir=tls_dir, admin_token=TOKEN,
                     rebalance_interval=0, **kw)


# -- pure parts -------------------------------------------------------------------------------------
def test_subject_ous_and_roles() -> None:
    assert security.subject_ous("OU=datanode,CN=dn1") == ["datanode"]
    assert security.subject_ous("CN=x,OU=zero+OU=admin,O=acme") == ["zero", "admin"]
    assert security.subject_ous(r"CN=a\,OU=admin,O=x") == []  # an escaped comma is part of the CN
    assert security.subject_ous(r"OU=ad\6din") == ["admin"]
    assert security.subject_ous("CN=only") == []
    ctx = types.SimpleNamespace(auth_context=lambda: {"transport_security_type": [b"ssl"],
                                                      "x509_subject": [b"OU=datanode,CN=dn1"]})
    assert security.peer_roles(ctx) == {"datanode"}
    security.authorize("/zero.v1.Zero/Connect", ctx)
    for method in ("/zero.v1.ZeroAdmin/RaftStatus", "/zero.v1.Raft/Stream", "/some.Other/Call"):
        with pytest.raises(PermissionDeniedError):
            security.authorize(method, ctx)
    plain = types.SimpleNamespace(auth_context=lambda: {})
    assert security.peer_roles(plain) is None
    security.authorize("/zero.v1.Raft/Stream", plain)  # not over TLS: the server's port decides


def test_tls_dir_validation(tmp_path: Path, pki: dict[str, str]) -> None:
    with pytest.raises(security.TlsError, match="node.key is missing"):
        d = tmp_path / "partial"
        d.mkdir()
        (d / "ca.crt").write_bytes(Path(pki["zero"], "ca.crt").read_bytes())
        (d / "node.crt").write_bytes(Path(pki["zero"], "node.crt").read_bytes())
        security.load_tls(str(d))
    (d / "node.key").write_text("not a key")
    with pytest.raises(security.TlsError, match="node.key is not PEM"):
        security.load_tls(str(d))
    tls = security.load_tls(pki["zero"])
    assert "PRIVATE" not in repr(tls)
    p = cli.build_parser()
    assert cli.config_from_args(p.parse_args(["run", "--tls-dir", pki["zero"]]), {}).tls_dir == pki["zero"]
    assert cli.config_from_args(p.parse_args(["run"]), {"ZERO_TLS_DIR": pki["zero"]}).tls_dir == pki["zero"]
    with pytest.raises(cli.UsageError, match="not a directory"):
        cli.config_from_args(p.parse_args(["run", "--tls-dir", str(tmp_path / "nope")]), {})


# -- one zero -----------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_tls_roles_and_token_on_one_zero(tmp_path: Path, pki: dict[str, str]) -> None:
    async def main() -> None:
        logs = io.StringIO()
        app = ZeroApp(_config(tmp_path, "z1", pki["zero"]), log_stream=logs)
        await app.start()
        dns: list[DataNode] = []
        try:
            node = app.node
            assert node is not None
            await until(lambda: node.is_leader and bool(node.state.cluster_id), 20)
            addr = f"127.0.0.1:{app.grpc_port}"
            req = zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1)

            # Refused at the handshake: plaintext, no client certificate, another CA.
            for ch in (grpc.aio.insecure_channel(addr), grpc.aio.secure_channel(addr, _ca_only(pki["zero"])),
                       grpc.aio.secure_channel(addr, _creds(pki["foreign"]))):
                async with ch:
                    assert await _code(zero_pb2_grpc.ZeroStub(ch).AssignIds(req, timeout=3)) == SC.UNAVAILABLE

            admin_md = (("authorization", f"Bearer {TOKEN}"),)
            # A data node's certificate: Zero yes; ZeroAdmin, Raft and forced claims no.
            async with grpc.aio.secure_channel(addr, _creds(pki["datanode"])) as ch:
                z, a, r = zero_pb2_grpc.ZeroStub(ch), zero_pb2_grpc.ZeroAdminStub(ch), tgrpc.RaftStub(ch)
                m = (await z.Connect(zero_pb2.ConnectRequest(addr="dn-a:7080"))).member
                assert (await z.AssignIds(req)).start_id >= 1
                ts = [r async for r in z.TimestampStream(iter([zero_pb2.TimestampsRequest(count=2)]))]
                assert len(ts) == 1 and ts[0].end_id == ts[0].start_id + 1
                t = await z.ShouldServe(zero_pb2.Tablet(predicate="p", group_id=m.group_id))
                assert t.group_id == m.group_id
                assert await _code(a.RaftStatus(zero_pb2.RaftStatusRequest(), metadata=admin_md)) \
                    == SC.PERMISSION_DENIED
                assert await _code(a.Snapshot(zero_pb2.SnapshotRequest(), metadata=admin_md)) == SC.PERMISSION_DENIED
                assert await _code(z.ShouldServe(zero_pb2.Tablet(predicate="p", group_id=m.group_id, force=True),
                                                 metadata=admin_md)) == SC.PERMISSION_DENIED
                assert await _code(r.JoinCluster(tpb.JoinClusterRequest(addr="x:1", protocol=tpb.RAFT_PROTOCOL_V1))) \
                    == SC.PERMISSION_DENIED
                stream = r.Stream()
                await stream.write(tpb.RaftBatch(protocol=tpb.RAFT_PROTOCOL_V1, cluster_id=node.cluster_id,
                                                 from_id=7, to_id=1))
                await stream.done_writing()
                assert await _code(stream) == SC.PERMISSION_DENIED
                h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())  # any role
                assert h.status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)

            # A certificate without a role may only ask for health.
            async with grpc.aio.secure_channel(addr, _creds(pki["none"])) as ch:
                assert await _code(zero_pb2_grpc.ZeroStub(ch).AssignIds(req)) == SC.PERMISSION_DENIED
                stream = zero_pb2_grpc.ZeroStub(ch).TimestampStream(iter([zero_pb2.TimestampsRequest(count=1)]))
                assert await _code(_drain(stream)) == SC.PERMISSION_DENIED

            # An admin certificate: ZeroAdmin with the token; the token is still required.
            async with grpc.aio.secure_channel(addr, _creds(pki["admin"])) as ch:
                a = zero_pb2_grpc.ZeroAdminStub(ch)
                st = await a.RaftStatus(zero_pb2.RaftStatusRequest(), metadata=admin_md)
                assert st.role == "LEADER"
                assert await _code(a.RaftStatus(zero_pb2.RaftStatusRequest())) == SC.UNAUTHENTICATED
                assert await _code(a.RaftStatus(zero_pb2.RaftStatusRequest(),
                                                metadata=(("authorization", f"Bearer {WRONG}"),))) \
                    == SC.PERMISSION_DENIED
                assert await _code(tgrpc.RaftStub(ch).JoinCluster(tpb.JoinClusterRequest(
                    addr="x:1", protocol=tpb.RAFT_PROTOCOL_V1))) == SC.PERMISSION_DENIED
                t = await zero_pb2_grpc.ZeroStub(ch).ShouldServe(
                    zero_pb2.Tablet(predicate="p", group_id=m.group_id, force=True), metadata=admin_md)
                assert t.group_id == m.group_id

            # Refusals are logged as warnings, never with a token's value.
            text = logs.getvalue()
            refused = [json.loads(line) for line in text.splitlines() if "not authorized" in line]
            assert any(e["code"] == "PERMISSION_DENIED" and e["method"] == "zero.v1.ZeroAdmin/RaftStatus"
                       and e["level"] == "warning" and "token is wrong" in e["error"] for e in refused), refused
            assert any(e["code"] == "PERMISSION_DENIED" and "role datanode" in e["error"] for e in refused)
            assert WRONG not in text and TOKEN not in text
            assert any(json.loads(line).get("tls_dir") == pki["zero"] for line in text.splitlines()
                       if "zero is running" in line)

            # The admin CLI: an admin certificate works; a data node's is refused; no TLS
            # cannot reach the port.
            def admin_cli(*args: str) -> tuple[int, str]:
                out, err = io.StringIO(), io.StringIO()
                ns = cli.build_parser().parse_args(["admin", *args, "--addr", addr, "--json"])
                return run_admin(ns, out, err), out.getvalue() + err.getvalue()

            assert (await asyncio.to_thread(admin_cli, "status", "--tls-dir", pki["admin"], "--token", TOKEN))[0] \
                == EXIT_OK
            assert (await asyncio.to_thread(admin_cli, "state", "--tls-dir", pki["admin"]))[0] == EXIT_OK
            code, text = await asyncio.to_thread(admin_cli, "status", "--tls-dir", pki["datanode"], "--token", TOKEN)
            assert code == EXIT_REFUSED and "PERMISSION_DENIED" in text
            code, _ = await asyncio.to_thread(admin_cli, "status", "--token", TOKEN, "--timeout", "2")
            assert code == EXIT_UNREACHABLE
            code, text = await asyncio.to_thread(admin_cli, "status", "--tls-dir", str(tmp_path / "missing"))
            assert code == EXIT_USAGE and "missing" in text

            # Reference data nodes over TLS, and a tablet move between them: zero dials the
            # source with its certificate, the source copies to the destination with its own.
            for _ in range(2):
                dn = DataNode(DataNodeConfig(zero=(addr,), addr="127.0.0.1:0", tls_dir=pki["datanode"],
                                             log_format="json"), log_stream=io.StringIO())
                await dn.start()
                dns.append(dn)
            src, dst = dns
            async with grpc.aio.secure_channel(src.addr, _creds(pki["datanode"])) as ch:
                d = datanode_pb2_grpc.DataNodeStub(ch)
                await d.Put(datanode_pb2.PutRequest(tablet="t", key=b"k", value=b"v"))
            async with grpc.aio.secure_channel(src.addr, _creds(pki["admin"])) as ch:
                assert await _code(datanode_pb2_grpc.DataNodeStub(ch).Get(
                    datanode_pb2.GetRequest(tablet="t", key=b"k"))) == SC.PERMISSION_DENIED
            async with grpc.aio.insecure_channel(src.addr) as ch:
                assert await _code(datanode_pb2_grpc.DataNodeStub(ch).Get(
                    datanode_pb2.GetRequest(tablet="t", key=b"k"), timeout=3)) == SC.UNAVAILABLE
            async with grpc.aio.secure_channel(addr, _creds(pki["admin"])) as ch:
                r = await zero_pb2_grpc.ZeroAdminStub(ch).MoveTablet(
                    zero_pb2.MoveTabletRequest(predicate="t", dst_group=dst.group), metadata=admin_md, timeout=30)
                assert r.committed, r.message
            async with grpc.aio.secure_channel(dst.addr, _creds(pki["datanode"])) as ch:
                d = datanode_pb2_grpc.DataNodeStub(ch)
                await until(lambda: node.state.group_of("t") == dst.group, 20)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while True:
                    try:
                        g = await d.Get(datanode_pb2.GetRequest(tablet="t", key=b"k"))
                        break
                    except grpc.aio.AioRpcError:
                        if loop.time() > deadline:
                            raise
                        await asyncio.sleep(0.05)
                assert g.found and g.value == b"v"
        finally:
            for dn in dns:
                await dn.stop()
            await app.stop()

    asyncio.run(main())


# -- three zeros ------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_three_zeros_form_forward_and_fail_over_with_tls(tmp_path: Path, pki: dict[str, str]) -> None:
    async def main() -> None:
        apps: list[ZeroApp] = []
        logs: list[io.StringIO] = []
        try:
            for i in range(3):
                peer = f"localhost:{apps[0].grpc_port}" if apps else ""
                logs.append(io.StringIO())
                app = ZeroApp(_config(tmp_path, f"z{i + 1}", pki["zero"], peer=peer), log_stream=logs[-1])
                await app.start()
                apps.append(app)
                if i == 0:
                    await until(lambda: app.node.is_leader and 1 in app.node.state._state.zeros, 20,
                                message="bootstrap")
            await until(lambda: all(a.node.leader_id for a in apps)
                         and all(len(a.node.state._state.zeros) == 3 for a in apps)
                         and all(a.node.transport.peer_up(p) for a in apps if a.node.is_leader
                                 for p in a.node.state._state.zeros if p != a.node.raft_id)
                         # Voters, not learners still in their promotion window: a leader
                         # stopped before that leaves a configuration of one voter, gone.
                         and all(len(a.node.raft_status().voters) == 3 and not a.node.raft_status().learners
                                 for a in apps if a.node.is_leader), 20,
                         message="three zeros over TLS, all voters")
            leader = next(a for a in apps if a.node.is_leader)
            follower = next(a for a in apps if not a.node.is_leader)
            # Through a follower: forwarded to the leader over TLS (with the zero's certificate).
            async with grpc.aio.secure_channel(f"127.0.0.1:{follower.grpc_port}", _creds(pki["datanode"])) as ch:
                z = zero_pb2_grpc.ZeroStub(ch)
                first = await z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=10))
                m = (await z.Connect(zero_pb2.ConnectRequest(addr="dn-b:7080"))).member
            async with grpc.aio.secure_channel(f"127.0.0.1:{follower.grpc_port}", _creds(pki["admin"])) as ch:
                snap = await zero_pb2_grpc.ZeroAdminStub(ch).Snapshot(
                    zero_pb2.SnapshotRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),))
                assert snap.index > 0

            # Stop the leader without a hand-over: the others elect a new one, writes go on.
            object.__setattr__(leader.node.opts, "transfer_on_stop", 0.0)
            t0 = time.monotonic()
            await leader.stop()
            rest = [a for a in apps if a is not leader]
            try:
                await until(lambda: any(a.node.is_leader for a in rest), 20, message="a new leader")
            except AssertionError as e:  # the zeros' own account of the 20 s, for the next reader
                tails = "\n".join(f"--- z{i + 1}:\n{log.getvalue()[-6000:]}" for i, log in enumerate(logs))
                raise AssertionError(f"{e}\n{tails}") from None
            elected = time.monotonic() - t0
            async with ZeroClient([f"localhost:{a.grpc_port}" for a in rest], credentials=_creds(pki["datanode"])) as zc:
                start, end = await zc.assign_ids(zero_pb2.UID, 5)
                assert start > first.end_id and end - start == 4
                assert await zc.timestamp() > 0
                t = await zc.should_serve("after-failover", m.group_id)
                assert t.group_id == m.group_id
            assert elected < 10, elected
        finally:
            for a in apps:
                if a.node is not None:
                    object.__setattr__(a.node.opts, "transfer_on_stop", 0.0)
            await asyncio.gather(*(a.stop() for a in apps), return_exceptions=True)

    asyncio.run(main())
