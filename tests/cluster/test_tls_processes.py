"""`zero run --tls-dir` as a real process: HTTPS on the HTTP port, /live over plain HTTP
on --live-addr, SIGHUP reloads a rotated certificate (new connections on both ports
show the new serial), SIGTERM still exits 0; an expired certificate at start is one
line naming node.crt and its dates, exit 1. (The rotation under load and the refused
reloads: tests/zero/test_tls_reload.py.)"""

from __future__ import annotations

import datetime
import json
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

cryptography = pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")

from procs import FAST, REPO, clean_env  # noqa: E402
from support import free_ports, until  # noqa: E402
from support.tls import CA, served_serial  # noqa: E402

UTC = datetime.timezone.utc


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body); (0, {}) when the request fails below HTTP."""
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


@pytest.mark.timeout(90)
def test_https_sighup_reload_and_expired_certificate(tmp_path: Path) -> None:
    ca = CA()
    d = tmp_path / "tls"
    first = ca.write(d, "z1", "zero").serial
    grpc_port, http_port, live_port = free_ports(3)
    log = tmp_path / "z1.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "z1"),
             "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
             "--live-addr", f"127.0.0.1:{live_port}", "--tls-dir", str(d), "--log-format", "json", *FAST],
            cwd=REPO, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cadata=ca.pem.decode())  # no client certificate
        https = f"https://localhost:{http_port}"

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            return get(f"{https}/health", ctx)[0] == 200

        until(healthy, 30, message="HTTPS /health 200")
        assert get(f"http://127.0.0.1:{http_port}/health")[0] == 0  # plain HTTP to the HTTPS port
        assert get(f"http://127.0.0.1:{live_port}/live") == (200, {"live": True, "raft_id": 1})
        client = (str(d / "node.crt"), str(d / "node.key"))  # a zero's certificate is a valid client too
        assert served_serial(http_port, ca.pem) == first
        assert served_serial(grpc_port, ca.pem, client, alpn=True) == first

        second = ca.write(d, "z1", "zero").serial
        proc.send_signal(signal.SIGHUP)
        client = (str(d / "node.crt"), str(d / "node.key"))
        until(lambda: served_serial(http_port, ca.pem) == second, 10, message="the new certificate on HTTPS")
        assert served_serial(grpc_port, ca.pem, client, alpn=True) == second
        assert get(f"{https}/health", ctx)[0] == 200
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(e.get("event", "").startswith("TLS certificates reloaded") and e.get("reason") == "SIGHUP"
                   and e.get("tls_serial") == f"{second:x}" for e in events), events[-5:]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # An expired certificate: one line naming the file and its dates, exit 1.
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    nb, na = now - datetime.timedelta(days=9), now - datetime.timedelta(days=2)
    ca.write(tmp_path / "expired", "z1", "zero", not_before=nb, not_after=na)
    p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "z2"),
                        "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                        "--tls-dir", str(tmp_path / "expired"), "--log-format", "json"],
                       cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if "cannot start" in ln]
    assert str(tmp_path / "expired" / "node.crt") in line and "has expired" in line
    assert f"{nb:%Y-%m-%d %H:%M:%S} UTC until {na:%Y-%m-%d %H:%M:%S} UTC" in line, line
    assert "Traceback" not in p.stderr
