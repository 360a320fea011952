"""The typing gate: mypy, as configured in pyproject.toml ([tool.mypy]: strict, on
raftcore and zero; the generated zero.pb modules excluded), finds no error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_mypy_strict_finds_nothing() -> None:
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True,
                       text=True, timeout=290)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success" in p.stdout, p.stdout
