"""`zero admin moves` and `zero admin cancel-move ID` (zero/ops/moves_verbs.py): the
table, --json, usage errors (exit 2, nothing sent) and refusals (exit 1), against a
fake ZeroAdmin stub."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from zero import cli
from zero.ops.moves_verbs import moves_table
from zero.pb import zero_pb2, zero_pb2_grpc

from support import free_port

S = zero_pb2.MoveStatus
NOW = 1_700_000_100_000  # ms

MOVES = [
    S(move_id=3, predicate="old", src_group=1, dst_group=2, phase="COMMITTED", bytes_copied=0, keys_copied=0),
    S(move_id=4, predicate="user.name", src_group=1, dst_group=3, phase="ROLLED_BACK", bytes_copied=0,
      started_ms=NOW - 95_000, updated_ms=NOW - 90_000, message="cancelled by the operator"),
    S(move_id=5, predicate="p", src_group=2, dst_group=1, phase="FENCED", bytes_copied=50_000_000,
      keys_copied=1234, size_bytes=100_000_000, started_ms=NOW - 10_000, updated_ms=NOW - 500),
]


def test_the_table_shows_phase_progress_rate_and_age() -> None:
    assert moves_table(MOVES, NOW) == "\n".join([
        "ID  TABLET     SRC→DST  PHASE        COPIED               KEYS  RATE      AGE",
        "3   old        1→2      COMMITTED    0 B                  0     -         -",
        "4   user.name  1→3      ROLLED_BACK  0 B                  0     -         1m30s ago",
        "    cancelled by the operator",
        "5   p          2→1      FENCED       50.0 MB of 100.0 MB  1234  5.3 MB/s  10s",
    ])
    assert moves_table([], NOW) == "no tablet moves (none in progress, none recent)"


class _Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _FakeAdmin:
    calls: list[Any] = []

    def __init__(self, _channel: Any) -> None:
        pass

    def GetMoves(self, req: zero_pb2.GetMovesRequest, **_: Any) -> zero_pb2.GetMovesResponse:
        self.calls.append(req)
        return zero_pb2.GetMovesResponse(moves=[m for m in MOVES if req.move_id in (0, m.move_id)])

    def CancelMove(self, req: zero_pb2.CancelMoveRequest, **_: Any) -> zero_pb2.CancelMoveResponse:
        self.calls.append(req)
        if req.move_id == 3:
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION, "move 3 has already ended: it is COMMITTED")
        return zero_pb2.CancelMoveResponse(move=S(move_id=req.move_id, predicate="p", phase="ROLLED_BACK",
                                                  message="cancelled by the operator"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture
def addr(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(zero_pb2_grpc, "ZeroAdminStub", _FakeAdmin)
    _FakeAdmin.calls = []
    return f"127.0.0.1:{free_port()}"


def test_moves_lists_as_a_table_or_json(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["admin", "moves", "--addr", addr], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["ID", "TABLET", "SRC→DST", "PHASE", "COPIED", "KEYS",
                                                          "RATE", "AGE"], out
    assert [ln.split()[0] for ln in out.splitlines()[1:] if not ln.startswith(" ")] == ["3", "4", "5"]
    code, out, _ = run(["admin", "moves", "--addr", addr, "--id", "5", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and [m["move_id"] for m in doc["moves"]] == ["5"] and doc["moves"][0]["phase"] == "FENCED"
    assert doc["moves"][0]["bytes_copied"] == "50000000"
    assert [c.move_id for c in _FakeAdmin.calls] == [0, 5]


def test_cancel_move_answers_the_rolled_back_move(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["admin", "cancel-move", "5", "--addr", addr], capsys)
    assert code == 0 and out == "move 5 of tablet p: rolled back (cancelled by the operator)\n", out
    code, out, _ = run(["admin", "cancel-move", "5", "--addr", addr, "--json"], capsys)
    assert code == 0 and json.loads(out)["move"]["phase"] == "ROLLED_BACK"
    code, out, err = run(["admin", "cancel-move", "3", "--addr", addr], capsys)
    assert code == 1 and out == "" and "FAILED_PRECONDITION" in err and "COMMITTED" in err, err


@pytest.mark.parametrize("argv, words", [
    (["cancel-move", "0"], "above 0"),
    (["cancel-move", "abc"], "not a move id"),
    (["cancel-move"], "ID"),
    (["moves", "--id", "-3"], "above 0"),
])
def test_a_bad_move_id_is_a_usage_error_and_sends_nothing(addr: str, capsys: pytest.CaptureFixture[str],
                                                          argv: list[str], words: str) -> None:
    code, out, err = run(["admin", *argv, "--addr", addr], capsys)
    assert code == 2 and out == "" and words in err, err
    code, out, err = run(["admin", *argv, "--addr", addr, "--json"], capsys)
    assert code == 2 and out == "" and json.loads(err)["code"] == "USAGE" and words in json.loads(err)["error"]
    assert _FakeAdmin.calls == []
