"""HTTPS on the HTTP port, certificate reload without a restart, and certificate dates
(zero/security/: ServerTls, cert_infos; zero/app.py: the HTTPS site, --live-addr,
reload_tls and the --tls-dir watch).

- an expired or not-yet-valid certificate at start: exit 1, one line naming the file and
  both dates; the dates are read without `cryptography` (a small DER reader);
- the HTTP port serves HTTPS with node.crt: /health with the CA works without a client
  certificate (as Prometheus scrapes) and with one of the CA; a certificate of another CA
  and plain HTTP fail; --live-addr serves /live alone over plain HTTP;
- a CA-signed certificate is rotated twice while clients call in a loop (one long-lived
  gRPC channel, a fresh gRPC channel per call, a fresh HTTPS connection per request):
  no call fails; new connections present the new certificate (its serial, read over TLS
  on both ports; a fresh gRPC channel that trusts only the new certificate's CA gets
  through); the first rotation is picked up by the file watch, the second by a reload
  (what SIGHUP calls; tests/cluster/test_tls_processes.py sends the real signal);
- a bad set of files (a key of another certificate, an expired certificate, garbage) is
  refused with an error log, and zero keeps serving the old certificates.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import ssl
from pathlib import Path
from typing import Any

import grpc
import pytest

cryptography = pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")
aiohttp = pytest.importorskip("aiohttp")

from zero import cli  # noqa: E402
from zero import security  # noqa: E402
from zero.app import ZeroApp  # noqa: E402
from zero.config import RunConfig  # noqa: E402
from zero.pb import zero_pb2, zero_pb2_grpc  # noqa: E402

from support.aio import until  # noqa: E402
from support.tls import CA, replace_file, served_serial, tls_dir  # noqa: E402

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)


def _config(tmp_path: Path, tls: str, **kw: Any) -> RunConfig:
    return RunConfig(data_dir=str(tmp_path / "z1"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                     tick=0.02, election_ticks=10, log_format="json", tls_dir=tls, rebalance_interval=0, **kw)


def _log_lines(logs: io.StringIO, needle: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.getvalue().splitlines() if needle in line]


# -- dates -------------------------------------------------------------------------------------------
def test_certificate_dates_are_read_without_cryptography(tmp_path: Path) -> None:
    ca = CA("dates CA")
    nb = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    na = datetime.datetime(2061, 7, 8, 9, 10, 11, tzinfo=UTC)  # GeneralizedTime (2050 and later)
    cert, _, serial = ca.issue("n", "zero", not_before=nb, not_after=na)
    [info] = security.cert_infos(cert, "node.crt")
    assert (info.serial, info.not_before, info.not_after) == (serial, nb, na)
    infos = security.cert_infos(cert + ca.pem, "chain.crt")  # a chain: node.crt then its issuer
    assert [i.serial for i in infos] == [serial, ca.cert.serial_number]
    assert infos[1].not_after == ca.cert.not_valid_after_utc
    with pytest.raises(security.TlsError, match="bad.crt: certificate 1 is not a readable"):
        security.cert_infos(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad.crt")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["expired", "not yet valid"])
def test_a_certificate_out_of_its_dates_at_start_is_one_line_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], when: str) -> None:
    ca = CA("dates CA")
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    nb, na = (now - 10 * DAY, now - DAY) if when == "expired" else (now + DAY, now + 10 * DAY)
    cert, key, _ = ca.issue("z", "zero", not_before=nb, not_after=na)
    d = tls_dir(tmp_path / "tls", ca.pem, cert, key)
    code = cli.main(["run", "--tls-dir", d, "--data-dir", str(tmp_path / "z"), "--grpc-addr", "127.0.0.1:0",
                     "--http-addr", "127.0.0.1:0", "--log-format", "json"])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("zero: cannot start")]
    assert len(lines) == 1, err
    line = lines[0]
    assert os.path.join(d, "node.crt") in line
    assert ("has expired" if when == "expired" else "is not valid yet") in line
    assert f"valid from {nb:%Y-%m-%d %H:%M:%S} UTC until {na:%Y-%m-%d %H:%M:%S} UTC" in line, line
    # The same check refuses such a certificate for the data node and the admin CLI.
    with pytest.raises(security.TlsError, match="node.crt"):
        security.load_tls(d)


# -- HTTPS -------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_https_on_the_http_port_and_plain_live(tmp_path: Path) -> None:
    ca, foreign = CA("https CA"), CA("another CA")
    d = tls_dir(tmp_path / "zero", ca.pem, *ca.issue("z1", "zero")[:2])
    client = tls_dir(tmp_path / "client", ca.pem, *ca.issue("dn", "datanode")[:2])
    intruder = tls_dir(tmp_path / "intruder", foreign.pem, *foreign.issue("x", "admin")[:2])

    def ctx(client_dir: str | None = None) -> ssl.SSLContext:
        c = ssl.create_default_context(cadata=ca.pem.decode())
        if client_dir:
            c.load_cert_chain(os.path.join(client_dir, "node.crt"), os.path.join(client_dir, "node.key"))
        return c

    async def main() -> None:
        app = ZeroApp(_config(tmp_path, d, live_addr="127.0.0.1:0"), log_stream=io.StringIO())
        await app.start()
        try:
            node = app.node
            assert node is not None
            await until(lambda: node.is_leader, 20)
            https = f"https://localhost:{app.http_port}"
            async with aiohttp.ClientSession() as s:
                # No client certificate (Prometheus, curl --cacert), or one of the CA.
                async with s.get(f"{https}/health", ssl=ctx()) as r:
                    assert r.status == 200 and (await r.json())["raft_id"] == 1
                async with s.get(f"{https}/metrics", ssl=ctx(client)) as r:
                    assert r.status == 200 and "zero_" in await r.text()
                # A client certificate of another CA, a client that does not trust the CA,
                # and plain HTTP: refused.
                with pytest.raises(aiohttp.ClientError):
                    async with s.get(f"{https}/health", ssl=ctx(intruder)) as r:
                        await r.read()
                with pytest.raises(aiohttp.ClientError):
                    async with s.get(f"{https}/health", ssl=ssl.create_default_context()) as r:
                        await r.read()
                with pytest.raises(aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{app.http_port}/health",
                                     timeout=aiohttp.ClientTimeout(total=5)) as r:
                        await r.read()
                # --live-addr: /live alone, plain HTTP.
                assert app.live_port
                async with s.get(f"http://127.0.0.1:{app.live_port}/live") as r:
                    assert r.status == 200 and await r.json() == {"live": True, "raft_id": 1}
                async with s.get(f"http://127.0.0.1:{app.live_port}/state") as r:
                    assert r.status == 404
        finally:
            await app.stop()

    asyncio.run(main())


# -- rotation under load -----------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_certificates_rotate_under_load_without_a_failed_call(tmp_path: Path) -> None:
    ca1, ca2 = CA("CA one"), CA("CA two")
    bundle = ca1.pem + ca2.pem  # the zero trusts clients of both CAs throughout
    cert_a, key_a, serial_a = ca1.issue("z1", "zero")
    d = tls_dir(tmp_path / "zero", bundle, cert_a, key_a)
    zdir = Path(d)
    cl = tls_dir(tmp_path / "client", ca1.pem, *ca1.issue("dn", "datanode")[:2])
    cl_files = (os.path.join(cl, "node.crt"), os.path.join(cl, "node.key"))
    cl_cert, cl_key = Path(cl_files[0]).read_bytes(), Path(cl_files[1]).read_bytes()

    def grpc_creds(roots: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=cl_key, certificate_chain=cl_cert)

    async def main() -> None:
        logs = io.StringIO()
        app = ZeroApp(_config(tmp_path, d), log_stream=logs)
        app.tls_poll = 0.2
        await app.start()
        assert app.tls is not None
        node = app.node
        assert node is not None
        await until(lambda: node.is_leader and bool(node.state.cluster_id), 20)
        target = f"localhost:{app.grpc_port}"
        first_creds = app.node.transport.credentials
        req = zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1)
        ok = {"long-lived gRPC": 0, "fresh gRPC": 0, "fresh HTTPS": 0}
        failed: list[str] = []
        stop = asyncio.Event()

        async def long_lived() -> None:
            async with grpc.aio.secure_channel(target, grpc_creds(bundle)) as ch:
                z = zero_pb2_grpc.ZeroStub(ch)
                while not stop.is_set():
                    try:
                        await z.AssignIds(req, timeout=10)
                        ok["long-lived gRPC"] += 1
                    except grpc.aio.AioRpcError as e:
                        failed.append(f"long-lived gRPC: {e.code().name} {e.details()}")
                    await asyncio.sleep(0.005)

        async def fresh_grpc() -> None:
            while not stop.is_set():
                try:
                    async with grpc.aio.secure_channel(target, grpc_creds(bundle)) as ch:
                        await zero_pb2_grpc.ZeroStub(ch).AssignIds(req, timeout=10)
                    ok["fresh gRPC"] += 1
                except grpc.aio.AioRpcError as e:
                    failed.append(f"fresh gRPC: {e.code().name} {e.details()}")
                await asyncio.sleep(0.005)

        async def fresh_https() -> None:
            c = ssl.create_default_context(cadata=bundle.decode())
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                while not stop.is_set():
                    try:
                        async with s.get(f"https://localhost:{app.http_port}/health", ssl=c,
                                         timeout=aiohttp.ClientTimeout(total=10)) as r:
                            await r.read()
                            if r.status != 200:
                                failed.append(f"fresh HTTPS: status {r.status}")
                            else:
                                ok["fresh HTTPS"] += 1
                    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                        failed.append(f"fresh HTTPS: {e!r}")
                    await asyncio.sleep(0.005)

        def serials() -> tuple[int, int]:
            return (served_serial(app.http_port, bundle),
                    served_serial(app.grpc_port, bundle, client=cl_files, alpn=True))

        async def more_calls(n: int = 10) -> None:
            base = dict(ok)
            await until(lambda: all(ok[k] >= base[k] + n for k in ok), timeout=30, message=f"{n} more calls of each kind")

        loops = [asyncio.create_task(f()) for f in (long_lived, fresh_grpc, fresh_https)]
        try:
            await more_calls()
            assert await asyncio.to_thread(serials) == (serial_a, serial_a)

            # 1. The same CA, a new certificate: the file watch picks it up.
            cert_b, key_b, serial_b = ca1.issue("z1", "zero")
            replace_file(zdir / "node.key", key_b)
            replace_file(zdir / "node.crt", cert_b)
            await until(lambda: app.tls.reloads == 1, timeout=10, message="the watch to reload")
            await more_calls()
            assert await asyncio.to_thread(serials) == (serial_b, serial_b)
            assert app.node.transport.credentials is not first_creds  # peer channels made from now on

            # 2. A certificate of another CA, reloaded at once (what SIGHUP calls).
            cert_c, key_c, serial_c = ca2.issue("z1", "zero")
            replace_file(zdir / "node.crt", cert_c)
            replace_file(zdir / "node.key", key_c)
            assert app.reload_tls("test")
            assert await asyncio.to_thread(serials) == (serial_c, serial_c)
            # A fresh gRPC channel that trusts only the new CA gets through; only the old, not.
            async with grpc.aio.secure_channel(target, grpc_creds(ca2.pem)) as ch:
                await zero_pb2_grpc.ZeroStub(ch).AssignIds(req, timeout=10)
            async with grpc.aio.secure_channel(target, grpc_creds(ca1.pem)) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await zero_pb2_grpc.ZeroStub(ch).AssignIds(req, timeout=5)
                assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            await more_calls()

            # 3. Bad files are refused and the old certificates stay: a key of another
            # certificate, an expired certificate, garbage.
            now = datetime.datetime.now(UTC)
            expired, expired_key, _ = ca2.issue("z1", "zero", not_before=now - 3 * DAY, not_after=now - DAY)
            for crt, key, why in ((cert_c, key_b, "is not the private key"),
                                  (expired, expired_key, "has expired"),
                                  (b"not a certificate", key_c, "is not PEM")):
                replace_file(zdir / "node.crt", crt)
                replace_file(zdir / "node.key", key)
                assert not app.reload_tls("test")
                assert any(why in e["error"] for e in _log_lines(logs, "TLS reload failed")), why
                assert await asyncio.to_thread(serials) == (serial_c, serial_c)
                await more_calls(5)
            # The watch does not retry a refused set until it changes.
            reloads = app.tls.reloads
            errors = len(_log_lines(logs, "TLS reload failed"))
            await asyncio.sleep(1.0)
            assert app.tls.reloads == reloads
            assert len(_log_lines(logs, "TLS reload failed")) <= errors + 1

            # 4. Back to good files (node.crt of CA one again): picked up by the watch.
            cert_d, key_d, serial_d = ca1.issue("z1", "zero")
            replace_file(zdir / "node.crt", cert_d)
            replace_file(zdir / "node.key", key_d)
            await until(lambda: app.tls.reloads == reloads + 1, timeout=10, message="the watch to reload good files")
            assert await asyncio.to_thread(serials) == (serial_d, serial_d)
            await more_calls()
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await app.stop()
        assert failed == [], failed[:10]
        assert all(n >= 50 for n in ok.values()), ok
        reloaded = _log_lines(logs, "TLS certificates reloaded")
        assert [e["tls_serial"] for e in reloaded] == [f"{s:x}" for s in (serial_b, serial_c, serial_d)]

    asyncio.run(main())


# -- two zeros: reload with peers ----------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_reload_on_a_zero_with_peers_keeps_the_cluster_and_renews_its_channels(tmp_path: Path) -> None:
    ca = CA("cluster CA")
    dirs = [tls_dir(tmp_path / f"tls{i}", ca.pem, *ca.issue(f"z{i}", "zero")[:2]) for i in (1, 2)]
    client = tls_dir(tmp_path / "client", ca.pem, *ca.issue("dn", "datanode")[:2])
    creds = security.load_tls(client).channel_credentials()

    async def main() -> None:
        logs = [io.StringIO(), io.StringIO()]
        apps: list[ZeroApp] = []
        try:
            for i in range(2):
                cfg = RunConfig(data_dir=str(tmp_path / f"z{i + 1}"), grpc_addr="127.0.0.1:0",
                                http_addr="127.0.0.1:0", tick=0.02, election_ticks=10, log_format="json",
                                tls_dir=dirs[i], rebalance_interval=0,
                                peer=f"localhost:{apps[0].grpc_port}" if apps else "")
                app = ZeroApp(cfg, log_stream=logs[i])
                await app.start()
                apps.append(app)
                if i == 0:
                    await until(lambda: app.node.is_leader and bool(app.node.state.cluster_id), 20)
            await until(lambda: all(len(a.node.state.zeros) == 2 and a.node.leader_id for a in apps)
                        and all(a.node.transport.peer_up(p) for a in apps for p in a.node.state.zeros
                                if p != a.node.raft_id), 20, message="two zeros over TLS")
            follower = next(a for a in apps if not a.node.is_leader)
            i = apps.index(follower)
            cert, key, serial = ca.issue(f"z{i + 1}-new", "zero")
            replace_file(Path(dirs[i]) / "node.crt", cert)
            replace_file(Path(dirs[i]) / "node.key", key)
            assert follower.reload_tls("SIGHUP")
            # Every cache of channels to other zeros dials anew from now on: no channel
            # keeps presenting the old certificate at its next reconnect.
            assert _log_lines(logs[i], "every reconnect use them")
            assert not _log_lines(logs[i], "keep presenting the certificate")
            assert served_serial(follower.grpc_port, ca.pem, client=(os.path.join(client, "node.crt"),
                                                                     os.path.join(client, "node.key")), alpn=True) \
                == serial
            # The follower still forwards to the leader, and the peers still talk.
            async with grpc.aio.secure_channel(f"localhost:{follower.grpc_port}", creds) as ch:
                r = await zero_pb2_grpc.ZeroStub(ch).AssignIds(
                    zero_pb2.AssignIdsRequest(kind=zero_pb2.TIMESTAMP, count=3), timeout=10)
                assert r.end_id == r.start_id + 2
            assert all(a.node.transport.peer_up(p) for a in apps for p in a.node.state.zeros if p != a.node.raft_id)
        finally:
            await asyncio.gather(*(a.stop() for a in apps), return_exceptions=True)

    asyncio.run(main())
