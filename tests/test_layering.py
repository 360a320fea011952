"""Layering rules for raftcore/ and zero/, checked on the source (docs/DESIGN.md "Layers"):

- no import cycles between modules (every import counts, TYPE_CHECKING ones too: a
  Protocol in the lower module replaces an import of the higher one);
- no access to another object's private members (`x._name` where x is not self or cls).
  ALLOWED lists what is left of the old reaches across objects: it may only shrink (an
  entry that no longer occurs fails too, so the list stays the truth).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raftcore", "zero")

# (file, expression) -> occurrences; a ratchet that may only shrink. It is empty: keep it so.
# (A standard-library module's documented underscore names, such as os._exit, are not
# another object's private members and are not counted.)
ALLOWED: Counter[tuple[str, str]] = Counter()

# zero's layers, lowest first (docs/DESIGN.md "Layers"; zero/__init__.py). A module may
# import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("zero.pb", "zero.errors", "zero.buggify"),
    ("zero.state", "zero.config", "zero.datadir", "zero.log", "zero.metrics", "zero.net", "zero.rpc",
     "zero.security"),
    ("zero.client",),
    ("zero.replica",),
    ("zero.leader", "zero.ops"),
    ("zero.frontdoor",),
    ("zero.datanode",),
    ("zero.app",),
    ("zero.cli", "zero.runner", "zero.__main__", "zero"),
]
# The pure state machine imports none of these (nor anything of zero above zero.errors/pb).
STATE_FORBIDDEN = frozenset({"asyncio", "socket", "time", "threading", "os", "grpc", "structlog",
                             "prometheus_client", "subprocess", "random"})
# Cycles still to break (the same ratchet: may only shrink). Goal: empty.
ALLOWED_CYCLES: list[list[str]] = []


def _sources() -> list[Path]:
    out = []
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            if p.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            out.append(p)
    return out


def _module(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(p: Path, mod: str) -> set[str]:
    is_pkg = p.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    out: set[str] = set()
    for n in ast.walk(ast.parse(p.read_text())):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in n.names)  # `from . import x` names module x
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in _sources()}
    graph: dict[str, set[str]] = {}
    for mod, p in files.items():
        deps = set()
        for target in _imports(p, mod):
            # The longest known module the import names (a package's __init__ counts).
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != mod and not _is_ancestor(target, mod):
                deps.add(target)
        graph[mod] = deps
    return graph


def _is_ancestor(pkg: str, mod: str) -> bool:
    """A package's own __init__ is not an edge from its modules (Python runs it first)."""
    return mod.startswith(pkg + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(mod: str) -> int:
    best, rank = "", -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (mod == name or mod.startswith(name + ".")) and len(name) > len(best):
                best, rank = name, i
    if rank < 0:
        raise AssertionError(f"{mod} is in no layer: add it to LAYERS in tests/test_layering.py")
    return rank


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(graph.items()):
        if not mod.startswith("zero"):
            continue
        for dep in sorted(deps):
            if dep.startswith("zero") and layer_of(dep) > layer_of(mod):
                out.append(f"{mod} -> {dep}")
    return out


def _stdlib_module_names(tree: ast.AST) -> set[str]:
    return {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names if a.name.split(".")[0] in sys.stdlib_module_names}


def private_accesses() -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for p in _sources():
        rel = str(p.relative_to(ROOT))
        tree = ast.parse(p.read_text())
        stdlib = _stdlib_module_names(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__"):
                if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"):
                    continue
                if isinstance(n.value, ast.Name) and n.value.id in stdlib:
                    continue
                found[(rel, ast.unparse(n))] += 1
    return found


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    new = [c for c in found if c not in ALLOWED_CYCLES]
    assert not new, "import cycles (break them with a Protocol in the lower module):\n" + "\n".join(
        " <-> ".join(c) for c in new)
    gone = [c for c in ALLOWED_CYCLES if c not in found]
    assert not gone, f"cycles broken, remove from ALLOWED_CYCLES in tests/test_layering.py: {gone}"


def test_the_cycle_check_catches_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_reaching_into_private_members() -> None:
    found = private_accesses()
    new = {k: v for k, v in found.items() if v > ALLOWED.get(k, 0)}
    gone = {k: v for k, v in ALLOWED.items() if found.get(k, 0) < v}
    assert not new, "private members reached from outside their object (use a public method):\n" + "\n".join(
        f"  {f}: {e} x{n}" for (f, e), n in sorted(new.items()))
    assert not gone, "fixed, remove from ALLOWED in tests/test_layering.py:\n" + "\n".join(
        f"  {f}: {e}" for (f, e), _ in sorted(gone.items()))


def test_zero_imports_point_down_the_layers() -> None:
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layers (move the shared piece down, or invert with a Protocol):\n" + \
        "\n".join(f"  {b}" for b in bad)


def test_the_layer_check_catches_an_upward_import() -> None:
    assert upward_imports({"zero.state.machine": {"zero.replica.node", "zero.errors"},
                           "zero.frontdoor.http": {"zero.replica.node"}}) == \
        ["zero.state.machine -> zero.replica.node"]


def test_the_state_machine_is_pure() -> None:
    bad = []
    for p in sorted((ROOT / "zero" / "state").rglob("*.py")):
        mod = _module(p)
        for target in _imports(p, mod):
            root = target.split(".")[0]
            if root in STATE_FORBIDDEN or (root == "zero" and layer_of(target) > 1) or (
                    root == "zero" and layer_of(target) == 1 and not target.startswith("zero.state")):
                bad.append(f"{p.relative_to(ROOT)}: {target}")
    assert not bad, "zero/state must stay pure (no I/O, clocks, grpc or higher layers):\n" + "\n".join(bad)


# Files of one concept (issue "zero/ as layers"): at most this many lines each, except
# raft.py, which keeps etcd's raft.go in one file for side-by-side reading.
MAX_LINES = 450
LONG_FILES = {"raftcore/raft.py"}


def test_files_stay_small() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _sources()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= LONG_FILES, "files over {} lines (split them by concept): {}".format(
        MAX_LINES, {k: v for k, v in long.items() if k not in LONG_FILES})
