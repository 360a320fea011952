"""Pictures of a `python -m bench --plot` run (matplotlib, the `bench` extra): replicated
writes per second against the number of callers for zero and etcd (with each one's no-op
ceiling from the same client), and the failover times of every trial per setting.

    throughput(res, path)   res: bench/run.py's {(measure, callers): [result per run]}
    failover(rows, path)    rows: [(label, write, [seconds per trial, inf = never])]

Each writes one PNG and returns its path. Medians over runs are drawn, min–max as bars."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["throughput", "failover", "available"]

Results = Mapping[tuple[str, int], Sequence[Mapping[str, Any]]]
STYLE = {"zero": ("tab:blue", "-"), "etcd": ("tab:orange", "-"), "pysyncobj": ("tab:green", "-"),
         "zero no-op": ("tab:blue", ":"), "etcd no-op": ("tab:orange", ":")}


def available() -> str | None:
    """None when matplotlib can be imported, else what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed: pip install -e '.[bench]'"
    return None


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def throughput(res: Results, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (color, line) in STYLE.items():
        points = sorted((c, [r["rate"] for r in rs]) for (n, c), rs in res.items() if n == name and rs)
        if not points:
            continue
        xs = [c for c, _ in points]
        med = [statistics.median(v) for _, v in points]
        err = [[m - min(v) for m, (_, v) in zip(med, points)], [max(v) - m for m, (_, v) in zip(med, points)]]
        ax.errorbar(xs, med, yerr=err, color=color, linestyle=line, marker="o", capsize=3,
                    label=name if "no-op" not in name else f"{name} (same client's ceiling)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent callers (closed loop)")
    ax.set_ylabel("acknowledged calls per second (median of runs)")
    ax.set_title("Replicated writes, 3 nodes on loopback")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def failover(rows: Sequence[tuple[str, str, Sequence[float]]], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.9 * max(1, len(rows))))
    for i, (label, _, xs) in enumerate(rows):
        done = [x * 1e3 for x in xs if math.isfinite(x)]
        ax.scatter(done, [i] * len(done), alpha=0.7, zorder=3)
        if done:
            ax.plot([statistics.median(done)] * 2, [i - 0.3, i + 0.3], color="black", zorder=4)
        lost = len(xs) - len(done)
        if lost:
            ax.annotate(f"{lost} trial(s) without an ack", (0, i), xytext=(4, 8), textcoords="offset points",
                        fontsize="small")
    ax.set_yticks(range(len(rows)), [label.split(" (")[0] for label, _, _ in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("kill -9 of the leader → first acknowledged write (ms); bar: median")
    ax.set_title("Failover, every trial")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
