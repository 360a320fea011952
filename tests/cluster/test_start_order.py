"""A busy HTTP port is found before the data dir is bootstrapped (issue 22 item 4g): zero
holds both ports and its data dir before it writes anything, so `zero run` on a busy
--http-addr is one line, exit 1, and leaves a data dir that a retry on a free port
bootstraps as if new (no cluster half-created under it)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from procs import REPO, clean_env
from support import until


@pytest.mark.timeout(120)
def test_a_busy_http_port_stops_zero_before_it_bootstraps(tmp_path: Path) -> None:
    data = tmp_path / "zw"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(data), "--grpc-addr",
                            "127.0.0.1:0", "--http-addr", f"127.0.0.1:{port}"],
                           cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == f"zero: cannot start: cannot listen for HTTP on 127.0.0.1:{port}: Address already in use\n"
    # Nothing but the data dir's lock: no identity, no WAL, no snapshot.
    assert sorted(x.name for x in data.iterdir()) in ([], ["LOCK"]), sorted(x.name for x in data.iterdir())
    # A retry on a free port starts a new cluster in it and stops cleanly.
    log = tmp_path / "retry.log"
    with open(log, "w") as err:
        z = subprocess.Popen([sys.executable, "-m", "zero", "run", "--data-dir", str(data), "--grpc-addr",
                              "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"],
                             cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            until(lambda: "IDENTITY" in {x.name for x in data.iterdir()} and "became leader" in log.read_text()
                  or z.poll() is not None, 60, message="the retry to bootstrap and lead")
            assert z.poll() is None, log.read_text()
            z.terminate()
            assert z.wait(30) == 0, log.read_text()
        finally:
            if z.poll() is None:
                z.kill()
                z.wait(5)
