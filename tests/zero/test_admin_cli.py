"""`zero admin` against a live in-process zero: human and --json output, exit codes."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from support import free_port
from zero import cli

from zeroapps import one_zero

TOKEN = "t0ken"


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ns = cli.build_parser().parse_args(argv)
    from zero.ops.admin import run_admin
    code = run_admin(ns, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.timeout(60)
def test_admin_verbs_and_exit_codes(tmp_path):
    async def main() -> None:
        app = await one_zero(tmp_path, admin_token=TOKEN)
        try:
            node = app.node
            loop = asyncio.get_running_loop()
            addr = f"127.0.0.1:{app.grpc_port}"
            run = lambda argv: loop.run_in_executor(None, _run_cli, argv)  # noqa: E731 (blocking gRPC)

            # gRPC health follows /health, refreshed every half second.
            deadline = loop.time() + 10
            while True:
                code, out, _ = await run(["admin", "health", "--addr", addr])
                if code == 0:
                    break
                assert loop.time() < deadline and "NOT_SERVING" in out
                await asyncio.sleep(0.1)
            assert "SERVING" in out
            code, out, _ = await run(["admin", "state", "--addr", addr])
            assert code == 0 and "zeros (1)" in out
            code, out, _ = await run(["admin", "state", "--addr", addr, "--json"])
            assert code == 0 and json.loads(out)["cluster_id"] == node.state.cluster_id
            # Admin verbs need the token: refused (1) without it, ok with it.
            code, _, err = await run(["admin", "status", "--addr", addr])
            assert code == 1 and "UNAUTHENTICATED" in err
            code, out, _ = await run(["admin", "status", "--addr", addr, "--token", TOKEN, "--json"])
            assert code == 0 and json.loads(out)["role"] == "LEADER"
            code, out, _ = await run(["admin", "snapshot", "--addr", addr, "--token", TOKEN])
            assert code == 0 and "snapshot at index" in out
            code, _, err = await run(["admin", "remove-node", "--addr", addr, "--token", TOKEN,
                                      "--id", "99", "--group", "1"])
            assert code == 1 and "NOT_FOUND" in err
        finally:
            await app.stop()

    asyncio.run(main())


def test_admin_unreachable_exits_3():
    code, _, err = _run_cli(["admin", "state", "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1"])
    assert code == 3 and "unreachable" in err


def test_admin_usage_exits_2():
    with pytest.raises(SystemExit) as ei:
        cli.build_parser().parse_args(["admin", "rebalance", "sideways"])
    assert ei.value.code == 2
