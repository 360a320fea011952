"""`zero admin` verbs for tablet moves (SPEC "Moves that keep writes available"):
`moves [--id N]` (a table of the queued, active and recent moves: id, tablet, src→dst,
phase, bytes and keys copied, rate, age; --json for the GetMoves answer) and
`cancel-move ID`. zero/ops/admin.py registers them and runs them with its output helpers
(human text, or --json; exit codes as every verb). A move id that is not a whole number
above 0 is a usage error (exit 2) before anything is sent.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from zero.pb import zero_pb2, zero_pb2_grpc

__all__ = ["VERBS", "add_verbs", "run_verb", "moves_table", "Output"]

VERBS = frozenset({"moves", "cancel-move"})

# (out, as_json, obj, human) -> None; admin.py's _print
Output = Callable[[TextIO, bool, object, Callable[[], str]], None]
_ACTIVE = frozenset({"QUEUED", "COPYING", "FENCED"})


def _move_id(raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw[:40]!r} is not a move id (a whole number)") from None
    if not 0 < v < 1 << 64:
        raise argparse.ArgumentTypeError(f"{v} is not a move id (above 0)")
    return v


def add_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    mv = verbs.add_parser("moves", parents=[common], help="tablet moves: queued, active and recent, with progress")
    mv.add_argument("--id", type=_move_id, default=0, metavar="ID", help="only this move")
    cm = verbs.add_parser("cancel-move", parents=[common], help="roll back a move in progress")
    cm.add_argument("id", type=_move_id, metavar="ID", help="the move's id (zero admin moves lists them)")


def _size(n: int) -> str:
    v = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if v < 1000 or unit == "TB":
            return f"{int(v)} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1000
    raise AssertionError("unreachable")


def _duration(ms: int) -> str:
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(m: zero_pb2.MoveStatus) -> str:
    took = m.updated_ms - m.started_ms
    if not m.started_ms or took <= 0 or not m.bytes_copied:
        return "-"
    return f"{_size(m.bytes_copied * 1000 // took)}/s"


def _age(m: zero_pb2.MoveStatus, now_ms: int) -> str:
    """How long it has run (an active move) or how long ago it ended (a finished one)."""
    if not m.started_ms:
        return "-"  # recorded by an older zero: no times
    if m.phase in _ACTIVE:
        return _duration(now_ms - m.started_ms)
    return f"{_duration(now_ms - m.updated_ms)} ago"


def moves_table(moves: Sequence[zero_pb2.MoveStatus], now_ms: int) -> str:
    """The human table of `zero admin moves` (aligned columns; the reason of a
    rolled-back move on the line below it)."""
    if not moves:
        return "no tablet moves (none in progress, none recent)"
    head = ("ID", "TABLET", "SRC→DST", "PHASE", "COPIED", "KEYS", "RATE", "AGE")
    rows = [(str(m.move_id), m.predicate, f"{m.src_group}→{m.dst_group}", m.phase,
             _size(m.bytes_copied) + (f" of {_size(m.size_bytes)}" if m.size_bytes else ""),
             str(m.keys_copied), _rate(m), _age(m, now_ms)) for m in moves]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = []
    for i, r in enumerate((head, *rows)):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i and moves[i - 1].message:
            lines.append(f"    {moves[i - 1].message}")
    return "\n".join(lines)


def run_verb(ns: argparse.Namespace, admin: zero_pb2_grpc.ZeroAdminStub, md: list[tuple[str, str]] | None,
             out: TextIO, show: Output, as_dict: Callable[[Any], dict[str, Any]],
             clock: Callable[[], float] = time.time) -> int:
    """Run a move verb; returns 0. grpc.RpcError: as every verb (a finished move's
    cancel is FAILED_PRECONDITION, exit 1)."""
    t = ns.timeout
    if ns.verb == "moves":
        r = admin.GetMoves(zero_pb2.GetMovesRequest(move_id=ns.id), timeout=t, metadata=md)
        show(out, ns.json, as_dict(r), lambda: moves_table(r.moves, int(clock() * 1000)))
        return 0
    c = admin.CancelMove(zero_pb2.CancelMoveRequest(move_id=ns.id), timeout=t, metadata=md)
    show(out, ns.json, as_dict(c), lambda: f"move {c.move.move_id} of tablet {c.move.predicate}: "
         f"{c.move.phase.lower().replace('_', ' ')} ({c.move.message or 'no reason given'})")
    return 0
