"""The mutation gate runs with the suite: every mutant of tests/mutants/catalog.py must be
caught by its tests (`python -m tests.mutants`; the unmutated run of those tests is the
rest of this suite, so the gate skips its own baseline here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_every_mutant_is_caught() -> None:
    p = subprocess.run([sys.executable, "-m", "tests.mutants", "--no-baseline"], cwd=REPO,
                       capture_output=True, text=True, timeout=880)
    print(p.stdout)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert "SURVIVED" not in p.stdout and " mutants caught" in p.stdout
