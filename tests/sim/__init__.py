"""The whole daemon in a seeded simulation (issue 17): real ZeroNodes, Leases, the
Oracle, MembershipHub and Liveness on a simulated network, disk and clock, one asyncio
event loop on virtual time, so one seed fixes every interleaving.

How the pieces stack:
    loop.py      - SimLoop (virtual time; the WAL thread run on the loop) and SimClock
    disk.py      - SimDisk/SimStorage: the WalStorage seam, a crash loses unsynced writes
    net.py       - SimNetwork/SimTransport: the PeerTransport seam, zero's own admission
    trace.py     - the event trace and its SHA-256 (replays must match it bit for bit)
    cluster.py   - SimZero (one zero wired as zero/app.py does) and SimCluster
    schedule.py  - one schedule: clients, nemesis, calm tail, checks
    checks.py    - the oracle's checkers (tests/fault/checkers.py supplies the rest)
    __main__.py  - python -m tests.sim --seeds N [--first-seed S]
"""

from __future__ import annotations

import os
import sys

# tests/ on sys.path, as the suite's conftest does: the fault suite's checkers are
# imported as `fault.checkers` whether this runs under pytest or `python -m tests.sim`.
_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
