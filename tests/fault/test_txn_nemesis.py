"""Transactions through the oracle under the nemesis (issue 18): the Jepsen bank workload
and a list-append workload (as Elle uses) on three `zero run` and one durable `zero
datanode` per group on 127.0.0.1, while the nemesis kills -9, pauses and restarts zeros,
storms leadership transfers and kills -9 or pauses data nodes (tests/fault/txn_run.py);
the list-append run also moves its tablets between groups all along. `--soak SECONDS` /
`ZERO_FAULT_SOAK` lengthens the schedules; `ZERO_FAULT_SEED` replays one.

The checkers are tested on planted violations in test_txn_checkers.py."""

from __future__ import annotations

import pytest

from .nemesis import FAULTS
from .runner import pytest_timeout
from .txn_run import run_txn_workload, txn_rig

ALL = (*FAULTS, "kill9_datanode", "pause_datanode")
SHORT = 20.0


@pytest.fixture
def rig(tmp_path):
    r = txn_rig(tmp_path / "t")
    try:
        yield r.start()
    finally:
        r.close()


@pytest.mark.timeout(pytest_timeout(SHORT, overhead=240.0))
def test_bank_under_the_nemesis(rig, seed, soak_seconds) -> None:
    r = run_txn_workload(rig, workload="bank", name="bank", seed=seed, duration=soak_seconds or SHORT, faults=ALL)
    r.check()
    assert r.faults >= 3 and r.figures["committed"] > 0, r.summary()


@pytest.mark.timeout(pytest_timeout(SHORT, overhead=240.0))
def test_list_append_under_the_nemesis_and_moves(rig, seed, soak_seconds) -> None:
    r = run_txn_workload(rig, workload="list_append", name="list-append", seed=seed,
                         duration=soak_seconds or SHORT, faults=ALL, mover=True)
    r.check()
    assert r.faults >= 3 and r.figures["committed"] > 0, r.summary()
