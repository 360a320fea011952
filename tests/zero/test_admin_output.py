"""`zero admin`'s errors and output for operators (issue "Operators' side", item 4 d, f, h,
i): addresses checked before dialing, `backup --out` checked before asking zero, errors as
JSON with --json, one JSON convention (64-bit numbers as strings), human words instead of
Python dicts; tablet names the server refuses; the HTTP port's favicon and leader-change
terms. In-process: `cli.main` with captured output, and one live ZeroApp."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import grpc
import pytest

from zero.ops import backup
from zero import cli
from zero.app import ZeroApp
from zero.pb import zero_pb2, zero_pb2_grpc

from support import free_port
from zeroapps import one_zero


def main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err


def one_json(text: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return json.loads(lines[0])


@pytest.mark.parametrize("addr, needle", [
    ("127.0.0.1", "has no port"),  # once dialed port 443
    (":99999", "invalid port"),  # once dialed 34463
    (":5080", "has no host"),
    ("", "is empty"),  # once printed gRPC library lines, exit 1
    ("127.0.0.1:0", "invalid port"),
    ("127.0.0.1:65536", "invalid port"),
    ("a b:1", "invalid host"),
])
def test_admin_addr_is_validated_before_dialing(addr: str, needle: str, capsys) -> None:
    t0 = time.monotonic()
    code, out, err = main(["admin", "state", "--addr", addr, "--timeout", "5"], capsys)
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and needle in err and "--addr" in err, err
    code, out, err = main(["admin", "state", "--addr", addr, "--json"], capsys)
    assert code == 2 and out == ""
    e = one_json(err)
    assert e["code"] == "USAGE" and needle in e["error"], e
    assert time.monotonic() - t0 < 3  # refused, not dialed


@pytest.mark.parametrize("flags, needle", [
    (["--zero", "127.0.0.1", "--addr", "127.0.0.1:7080"], "--zero '127.0.0.1' has no port"),
    (["--zero", ":99999", "--addr", "127.0.0.1:7080"], "--zero ':99999' has an invalid port"),
    (["--zero", "", "--addr", "127.0.0.1:7080"], "--zero: give at least one"),
    (["--zero", "z:5080", "--addr", "127.0.0.1"], "--addr '127.0.0.1' has no port"),
    (["--zero", "z:5080", "--addr", ":0"], "--addr ':0' has no host"),
    (["--zero", "z:5080", "--addr", ""], "--addr is empty"),
])
def test_datanode_addresses_share_the_validation(flags: list[str], needle: str, capsys) -> None:
    code, _, err = main(["datanode", *flags], capsys)
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_run_listen_addresses_share_the_validation() -> None:
    ns = cli.build_parser().parse_args(["run", "--grpc-addr", ":0"])
    with pytest.raises(cli.UsageError, match="has no host"):
        cli.config_from_args(ns, environ={})
    ns = cli.build_parser().parse_args(["run", "--grpc-addr", "127.0.0.1:0", "--join-timeout", "0"])
    with pytest.raises(cli.UsageError, match="join timeout"):
        cli.config_from_args(ns, environ={})
    ns = cli.build_parser().parse_args(["run", "--grpc-addr", "127.0.0.1:0", "--join-timeout", "5s"])
    assert cli.config_from_args(ns, environ={}).join_timeout == 5.0


def test_backup_out_is_checked_before_asking_zero(tmp_path, capsys) -> None:
    """A missing directory, a directory, a file as the parent or an unwritable place: one
    line, exit 1, and no call to zero (nothing listens at --addr: a call would exit 3)."""
    addr = f"127.0.0.1:{free_port()}"
    (tmp_path / "afile").write_text("x")
    for out, needle in ((tmp_path / "missing" / "b.bak", "does not exist"),
                        (tmp_path, "is a directory"),
                        (tmp_path / "afile" / "b.bak", "is not a directory"),
                        ("/proc/zero-test.bak", "cannot be written")):
        code, stdout, err = main(["admin", "backup", "--addr", addr, "--out", str(out), "--timeout", "5"], capsys)
        assert code == 1 and stdout == "", (out, code, err)
        assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err
        code, _, err = main(["admin", "backup", "--addr", addr, "--out", str(out), "--json"], capsys)
        e = one_json(err)
        assert code == 1 and e["code"] == "FAILED" and needle in e["error"], e
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no temp file left behind


def test_json_usage_and_unreachable_errors(capsys) -> None:
    code, out, err = main(["admin", "remove-node", "--json", "--id", "x"], capsys)
    e = one_json(err)
    assert code == 2 and out == "" and e["code"] == "USAGE" and "invalid int value" in e["error"], e
    code, _, err = main(["admin", "sideways", "--json"], capsys)
    assert code == 2 and one_json(err)["code"] == "USAGE"
    code, _, err = main(["admin", "remove-node", "--id", "x"], capsys)  # without --json: argparse's text
    assert code == 2 and "usage:" in err and not err.startswith("{")
    code, out, err = main(["admin", "state", "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1", "--json"],
                          capsys)
    e = one_json(err)
    assert code == 3 and out == "" and e["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), e


class _FakeAdmin:
    def __init__(self, _channel: Any) -> None:
        pass

    def TransferLeadership(self, req: Any, **_: Any) -> zero_pb2.TransferLeadershipResponse:
        return zero_pb2.TransferLeadershipResponse(leader_id=2)

    def SetRebalance(self, req: Any, **_: Any) -> zero_pb2.SetRebalanceResponse:
        return zero_pb2.SetRebalanceResponse(enabled=True, started_moves=[7, 9])


def test_human_output_is_words(monkeypatch, capsys) -> None:
    monkeypatch.setattr(zero_pb2_grpc, "ZeroAdminStub", _FakeAdmin)
    addr = f"127.0.0.1:{free_port()}"
    code, out, _ = main(["admin", "transfer-leader", "--addr", addr], capsys)
    assert code == 0 and out == "leadership transferred to zero 2\n", out
    code, out, _ = main(["admin", "transfer-leader", "--addr", addr, "--json"], capsys)
    assert code == 0 and json.loads(out) == {"leader_id": "2"}
    code, out, _ = main(["admin", "rebalance", "now", "--addr", addr], capsys)
    assert code == 0 and out == "rebalance now: rebalancing is on; moves started: 7, 9\n", out


@pytest.mark.timeout(60)
def test_live_zero_json_conventions_bad_names_and_http(tmp_path, monkeypatch, capsys) -> None:
    async def scenario() -> None:
        app = await one_zero(tmp_path)
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, checks, app)
        finally:
            await app.stop()

    def checks(app: ZeroApp) -> None:
        addr = f"127.0.0.1:{app.grpc_port}"
        with grpc.insecure_channel(addr) as ch:
            stub = zero_pb2_grpc.ZeroStub(ch)
            gid = stub.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"), timeout=5).member.group_id
            stub.ShouldServe(zero_pb2.Tablet(predicate="ok", group_id=gid), timeout=5)
            before = stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
            # Names with control characters or only whitespace are refused and change nothing.
            for name in ("a\x00b", "p\nq", "tab\there", "del\x7f", "   ", "\t\n", "line\u2028sep"):
                for call in (lambda: stub.ShouldServe(zero_pb2.Tablet(predicate=name, group_id=gid), timeout=5),
                             lambda: stub.Tablets(zero_pb2.TabletsRequest(tablets=[
                                 zero_pb2.Tablet(predicate="fine", group_id=gid),
                                 zero_pb2.Tablet(predicate=name, group_id=gid)]), timeout=5)):
                    with pytest.raises(grpc.RpcError) as ei:
                        call()
                    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, ei.value)
            after = stub.GetState(zero_pb2.GetStateRequest(), timeout=5)
            assert after.version == before.version and set(after.groups[gid].tablets) == {"ok"}

        # backup --json: 64-bit numbers are strings, as in state/status/snapshot output.
        out_file = tmp_path / "b.bak"
        code, out, err = main(["admin", "backup", "--addr", addr, "--out", str(out_file), "--json"], capsys)
        assert code == 0, err
        doc = json.loads(out)
        assert doc["out"] == str(out_file) and doc["bytes"] == str(out_file.stat().st_size)
        for key in ("raft_index", "raft_term", "max_uid", "max_txn_ts", "created_unix_ms"):
            assert isinstance(doc[key], str) and doc[key].isdigit(), (key, doc)
        code, out, _ = main(["admin", "backup", "--verify", str(out_file), "--json"], capsys)
        ver = json.loads(out)
        assert code == 0 and ver["ok"] is True and ver["raft_index"] == doc["raft_index"]
        assert isinstance(ver["max_uid"], str)
        code, out, _ = main(["admin", "state", "--addr", addr, "--json"], capsys)
        assert code == 0 and isinstance(json.loads(out)["version"], str)

        # A refusal with --json: the gRPC status name.
        code, out, err = main(["admin", "remove-node", "--addr", addr, "--id", "99", "--group", "1", "--json"],
                              capsys)
        e = one_json(err)
        assert code == 1 and out == "" and e["code"] == "NOT_FOUND", e

        # Writing the received backup fails: one line, exit 1, no traceback.
        def full_disk(*_: Any, **__: Any) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(backup, "write_atomically", full_disk)
        code, _, err = main(["admin", "backup", "--addr", addr, "--out", str(tmp_path / "c.bak")], capsys)
        assert code == 1 and err.count("\n") == 1 and "No space left on device" in err, err
        monkeypatch.undo()

        # The HTTP port: a favicon, and no 404 for /favicon.ico.
        base = f"http://127.0.0.1:{app.http_port}"
        with urllib.request.urlopen(base + "/favicon.ico", timeout=5) as r:
            assert r.status == 204
        with urllib.request.urlopen(base + "/static/favicon.svg", timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
            assert r.read().startswith(b"<svg")
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            assert b'rel="icon" href="/static/favicon.svg"' in r.read()

    asyncio.run(scenario())
