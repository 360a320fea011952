"""Fixtures for the fault suite. Soak runs: `ZERO_FAULT_SOAK=SECONDS` (or
`pytest tests/fault --soak SECONDS`) makes every nemesis run last that long instead of
the short CI schedule; `ZERO_FAULT_SEED` fixes the seed (default: derived from the
test name, so CI runs are reproducible)."""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))  # procs.py


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only seen when pytest is pointed at tests/fault (an "initial" conftest); the
    # environment variable works from anywhere.
    parser.addoption("--soak", type=float, default=None, metavar="SECONDS",
                     help="fault suite: run each nemesis schedule for SECONDS")


@pytest.fixture
def soak_seconds(request: pytest.FixtureRequest) -> float | None:
    opt = request.config.getoption("--soak", default=None)
    env = os.environ.get("ZERO_FAULT_SOAK")
    return float(opt) if opt else (float(env) if env else None)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    env = os.environ.get("ZERO_FAULT_SEED")
    return int(env) if env else zlib.crc32(request.node.name.encode())
