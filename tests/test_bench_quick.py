"""`python -m bench --quick` runs end to end: the runner is exercised, speed is
not judged. Peers that cannot be installed on this machine are skipped by the runner with
a printed reason; zero's part must always run (the runner exits 1 otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    r = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    text = out.read_text()
    assert "## Side by side with PySyncObj and etcd" in text
    for row in ("| zero | 1 |", "| zero | 64 |", "| zero, default", "| zero, 1 s"):
        assert row in text, row
    for peer, row in (("etcd", "| etcd | 64 |"), ("PySyncObj", "| pysyncobj | 64 |")):
        assert row in text or f"**{peer} skipped:**" in text, peer
    # The oracle's rows, beside etcd's Txn from the same run (bench/oracle_bench.py).
    assert "### The oracle" in text and "| commits/s, 64 callers, `timestamp()` + `commit` each |" in text
    assert "zero/etcd" in text or "**etcd skipped:**" in text
    # Every peer figure in the file comes from this run: no constant peer rates.
    for constant in ("18,400", "1,320 ms", "1,680 ms", "~2,300"):
        assert constant not in text, constant
    # zero's own benches ran (their output is printed, not written to the file).
    assert "zero's own: bench/raftcore_bench.py" in r.stdout
    assert "bench/raftcore_bench.py" not in text
    # Nothing the runner started is left behind.
    left = subprocess.run(["pgrep", "-f", "pysyncobj_node.py|initial-cluster-token zero-bench"],
                          capture_output=True, text=True).stdout.strip()
    assert not left, f"processes left running: {left}"
