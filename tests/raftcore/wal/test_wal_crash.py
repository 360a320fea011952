"""Crash tests: a child process applies random operations to a DiskStorage and
acknowledges each on a pipe after it returns; it is SIGKILLed at random moments (seeded
rounds, on the same directory). After each kill the directory must open and hold exactly
the state after the acknowledged operations, or after one more (written but killed
before the acknowledgement): no acknowledged write is ever lost."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftcore import MemoryStorage
from raftcore.wal import DiskStorage

from wal_testutil import OpGen, apply, copy_model, state

CHILD = str(Path(__file__).with_name("wal_crash_child.py"))
SEGMENT_SIZE = 16 << 10


def _run_and_kill(path: Path, seed: int, rng: random.Random) -> int:
    """Start the child, SIGKILL it at a random moment; returns the last acknowledged op."""
    p = subprocess.Popen([sys.executable, CHILD, str(path), str(seed), str(SEGMENT_SIZE)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    out = b""
    if rng.random() < 0.25:
        deadline = time.monotonic() + rng.uniform(0.0, 0.5)  # maybe while still opening
    else:
        while b"ready\n" not in out:
            r, _, _ = select.select([p.stdout], [], [], 10)
            assert r, "child did not start"
            chunk = os.read(p.stdout.fileno(), 65536)
            assert chunk, p.stderr.read() if p.stderr else "child died"
            out += chunk
        deadline = time.monotonic() + rng.uniform(0.0, 0.4)
    while (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            out += os.read(p.stdout.fileno(), 65536)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    out += p.stdout.read()
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr.read() if p.stderr else b"")
    acks = [int(x) for x in out.split() if x.isdigit()]
    assert acks == list(range(1, len(acks) + 1))
    return len(acks)


@pytest.mark.timeout(60)
def test_sigkill_at_random_moments_loses_no_acknowledged_operation(tmp_path: Path) -> None:
    rng = random.Random(20240517)
    path = tmp_path / "wal"
    model = MemoryStorage()
    total = 0
    for _ in range(10):
        seed = rng.randrange(2**32)
        acked = _run_and_kill(path, seed, rng)
        total += acked
        # The same generator on the model reproduces the child's operations.
        gen = OpGen(random.Random(seed), max_batch=40, max_data=200)
        m = copy_model(model)
        for _ in range(acked):
            apply(m, gen.next(m))
        after_acked = copy_model(m)
        apply(m, gen.next(m))
        with DiskStorage.open(path, segment_size=SEGMENT_SIZE) as d:
            got = state(d)
        if got == state(after_acked):
            model = after_acked
        else:
            assert got == state(m), f"recovered state is neither op {acked} nor {acked + 1}"
            model = m
    assert total > 50  # the rounds did real work
    assert len(list(path.glob("*.wal"))) >= 1
