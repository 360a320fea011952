"""Crash-detected failover (zero/replica/failover.py) with real processes on loopback.

The election timeout here is long (20 ms x 100 ticks: 2-4 s randomized), so the two
paths are told apart by time alone: a leader killed with kill -9 (its kernel resets the
followers' connections) is replaced well within one election timeout; a paused leader
(SIGSTOP: nothing is reset) only after it."""

from __future__ import annotations

import signal
import time

import pytest

from procs import ProcCluster
from support import until

SLOW_ELECTION = ("--tick", "20ms", "--election-ticks", "100")  # a 2 s election timeout


@pytest.mark.timeout(120)
def test_a_killed_leader_is_replaced_within_an_election_timeout(tmp_path) -> None:
    c = ProcCluster(tmp_path / "c", 3, flags=SLOW_ELECTION).start(timeout=60)
    try:
        lead = c.wait_leader()
        others = [z for z in c.zeros if z is not lead]
        time.sleep(0.5)  # steady state: the followers' streams to the leader are up
        t0 = time.monotonic()
        lead.kill9()
        new = until(lambda: c.leader(among=others), 10, interval=0.01, message="a new leader")
        took = time.monotonic() - t0
        assert took < 1.5, f"a new leader after {took:.2f}s: the crash was not detected"
        assert any("forgetting it and campaigning soon" in z.log_tail(20000) for z in others)
        assert new in others
    finally:
        c.cleanup()


@pytest.mark.timeout(120)
def test_a_paused_leader_still_takes_the_election_timeout(tmp_path) -> None:
    c = ProcCluster(tmp_path / "c", 3, flags=SLOW_ELECTION).start(timeout=60)
    try:
        lead = c.wait_leader()
        others = [z for z in c.zeros if z is not lead]
        time.sleep(0.5)
        t0 = time.monotonic()
        lead.signal(signal.SIGSTOP)
        try:
            until(lambda: c.leader(among=others), 20, interval=0.02, message="a new leader")
            took = time.monotonic() - t0
            assert took >= 1.9, f"a new leader after {took:.2f}s, before the election timeout: a pause is no crash"
            assert not any("forgetting it and campaigning soon" in z.log_tail(20000) for z in others)
        finally:
            lead.signal(signal.SIGCONT)
    finally:
        c.cleanup()
