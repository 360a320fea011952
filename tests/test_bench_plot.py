"""bench/plot.py draws `python -m bench --plot`'s pictures from a run's results, and the
runner refuses a bad --callers before it starts anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import plot

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _r(rate: float) -> dict[str, float]:
    return {"rate": rate, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}


def test_throughput_and_failover_pictures(tmp_path) -> None:
    res = {(name, c): [_r(base * c ** 0.5), _r(base * c ** 0.5 * 1.1)]
           for name, base in (("zero", 300.0), ("etcd", 900.0), ("zero no-op", 1500.0), ("etcd no-op", 4000.0))
           for c in (1, 4, 16, 64)}
    t = plot.throughput(res, tmp_path / "pics" / "t.png")
    f = plot.failover([("zero, default (tick 100 ms × 5)", "claim", [0.12, 0.15, float("inf")]),
                       ("etcd, default = 1 s", "KV/Put", [1.1, 1.3])], tmp_path / "pics" / "f.png")
    for p in (t, f):
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, p  # a drawn picture, not an empty canvas


def test_runner_refuses_bad_callers_before_starting() -> None:
    for bad in ("0", "a,b", ""):
        p = subprocess.run([sys.executable, "-m", "bench", "--callers", bad, "--no-install", "--skip-own"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "--callers" in p.stderr, (bad, p.stderr[-400:])
        assert "starting" not in p.stdout
