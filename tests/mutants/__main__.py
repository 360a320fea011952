"""`python -m tests.mutants [NAME ...] [--list] [--no-baseline] [--keep]`

Copies the tree (the files git knows, committed or not) to a temporary directory, checks
that the named tests pass there unmutated (the baseline), then for each mutant applies
its edits, runs its tests with `pytest -x`, and restores the files. A mutant is caught
when pytest reports a failed test (exit 1); it survives when its tests pass (exit 0).
Any other outcome (collection error, timeout, an edit that no longer matches) is an
error of the gate. Exit 0 only when every mutant run was caught.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .catalog import MUTANTS, Mutant

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300.0  # seconds per pytest run


def _tracked_files(repo: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=repo, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and (repo / p).is_file()]


def copy_tree(repo: Path, dst: Path) -> None:
    for rel in _tracked_files(repo):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)


def apply(root: Path, m: Mutant) -> dict[Path, str]:
    """Apply `m`'s edits; the original texts, for restore(). ValueError when an edit
    does not match exactly once (the catalog no longer fits the code)."""
    originals: dict[Path, str] = {}
    for e in m.edits:
        path = root / e.path
        text = path.read_text()
        originals.setdefault(path, text)
        n = text.count(e.old)
        if n != 1:
            restore(originals)
            raise ValueError(f"mutant {m.name}: the text to replace occurs {n} times in {e.path}, not once:\n{e.old}")
        path.write_text(text.replace(e.old, e.new))
    return originals


def restore(originals: dict[Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text)


def pytest(root: Path, tests: tuple[str, ...] | list[str], timeout: float = TIMEOUT) -> tuple[int, str, float]:
    """(pytest exit code, the tail of its output, seconds); code -1 on a timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
    env["PYTHONPATH"] = str(root)  # the copy, never the checkout the venv points at
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           *tests]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -1, out[-3000:], time.monotonic() - t0
    return p.returncode, (p.stdout + p.stderr)[-3000:], time.monotonic() - t0


def _check_copy_is_imported(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(root)}
    got = subprocess.run([sys.executable, "-c", "import raftcore, zero; print(zero.__file__, raftcore.__file__)"],
                         cwd=root, env=env, capture_output=True, text=True, check=True).stdout.split()
    for f in got:
        if not Path(f).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"mutants: the copy's packages are not the ones imported ({f}); "
                             f"is the project installed non-editable?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the named tests")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    ap.add_argument("--jobs", type=int, default=2, metavar="N",
                    help="mutants run at once, each on its own copy of the tree (default 2: the cores here)")
    args = ap.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:36} {m.breaks}\n{'':36} tests: {' '.join(m.tests)}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        print(f"mutants: unknown mutant(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.names] if args.names else list(MUTANTS)
    jobs = max(1, min(args.jobs, len(chosen)))
    copies = [Path(tempfile.mkdtemp(prefix=f"zero-mutants-{i}-")) for i in range(jobs)]
    t_start = time.monotonic()
    try:
        for tmp in copies:
            copy_tree(REPO, tmp)
        _check_copy_is_imported(copies[0])
        if not args.no_baseline:
            tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
            code, out, secs = pytest(copies[0], tests, timeout=TIMEOUT * 2)
            print(f"baseline: {'pass' if code == 0 else 'FAIL'} ({secs:.0f} s, {len(tests)} targets)", flush=True)
            if code != 0:
                print(out, file=sys.stderr)
                print("mutants: the named tests fail without any mutation; fix them first", file=sys.stderr)
                return 1
        free: queue.Queue[Path] = queue.Queue()
        for tmp in copies:
            free.put(tmp)
        lock = threading.Lock()

        def run_one(m: Mutant) -> tuple[str, str]:
            tmp = free.get()  # a copy no other mutant is using
            try:
                try:
                    originals = apply(tmp, m)
                except ValueError as e:
                    with lock:
                        print(f"{m.name}: ERROR {e}", flush=True)
                    return m.name, "ERROR"
                try:
                    code, out, secs = pytest(tmp, m.tests)
                finally:
                    restore(originals)
            finally:
                free.put(tmp)
            verdict = {1: "caught", 0: "SURVIVED", -1: "ERROR (timeout)"}.get(code, f"ERROR (pytest exit {code})")
            why = next((line[2:].strip() for line in out.splitlines() if line.startswith("E ")), "")
            with lock:
                print(f"{m.name}: {verdict} ({secs:.0f} s)" + (f" - {why[:160]}" if verdict == "caught" else ""),
                      flush=True)
                if verdict != "caught":
                    print("  " + "\n  ".join(out.splitlines()[-15:]), flush=True)
            return m.name, verdict

        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(run_one, chosen))
        bad = [n for n, v in results if v != "caught"]
        print(f"\n{len(results) - len(bad)} of {len(results)} mutants caught in {time.monotonic() - t_start:.0f} s"
              f" ({jobs} at a time)" + (f"; not caught: {', '.join(bad)}" if bad else ""))
        return 1 if bad else 0
    finally:
        for tmp in copies:
            if args.keep:
                print(f"copy kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
