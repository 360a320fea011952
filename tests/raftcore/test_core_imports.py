"""raftcore's core is a pure state machine (STYLE.md principle 1): none of its modules
imports asyncio, socket, time, threading, grpc, structlog or prometheus_client.

The imports are read with `ast`, so an import inside a function, a relative import or
`import a.b as c` is seen as written; only raftcore/node.py (the asyncio wrapper, as
etcd's node.go) is exempt. wal/ and testing/ do I/O or simulate it and are not core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raftcore

FORBIDDEN = frozenset({"asyncio", "socket", "time", "threading", "grpc", "structlog", "prometheus_client"})
PKG = Path(raftcore.__file__).resolve().parent
CORE_DIRS = ("", "quorum", "tracker", "confchange", "raftpb")
EXEMPT = {PKG / "node.py"}


def core_files() -> list[Path]:
    files = []
    for d in CORE_DIRS:
        files += sorted((PKG / d).glob("*.py"))
    return [f for f in files if f not in EXEMPT]


def imported_roots(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute module imported anywhere in the tree, plus
    modules named literally in __import__()/importlib.import_module() calls."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in ("__import__", "import_module") and node.args:
                a = node.args[0]
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    roots.add(a.value.split(".")[0])
    return roots


def test_core_files_found() -> None:
    names = {f.relative_to(PKG).as_posix() for f in core_files()}
    for must in ("raft.py", "rawnode.py", "log.py", "log_unstable.py", "ready.py", "read_only.py",
                 "storage.py", "config.py", "quorum/majority.py", "tracker/progress.py",
                 "confchange/changer.py", "raftpb/raft_pb2.py"):
        assert must in names
    assert "node.py" not in names


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_core_module_imports_no_io_or_concurrency(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = imported_roots(tree) & FORBIDDEN
    assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_the_check_sees_hidden_imports() -> None:
    src = (
        "from __future__ import annotations\n"
        "def f():\n    import time as t\n    from threading import Lock\n"
        "    import importlib; importlib.import_module('socket.x')\n"
        "    __import__('asyncio')\n"
        "from . import grpc\n"  # relative: raftcore.grpc, not the grpc package
    )
    assert imported_roots(ast.parse(src)) & FORBIDDEN == {"time", "threading", "socket", "asyncio"}
