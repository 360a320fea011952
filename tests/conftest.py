"""The suite's root conftest: tests/ goes on sys.path, so every test (and the helpers
it imports) can `import support`: the one poller (`support.until`, and
`support.aio.until` for the event loop), `free_port`/`free_ports`, and the test CA in
`support.tls`. Directory helpers stay in their directories (tests/zero/zeroapps.py,
tests/cluster/procs.py, tests/deploy/deploy_helpers.py) and build on `support`.

pytest's default import mode would put tests/ there too (this file's directory has no
__init__.py); saying it here keeps `import support` working under any mode."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
