"""`zero run --tls-dir` as a real process: HTTPS on the HTTP port, /live over plain HTTP
on --live-addr, SIGHUP reloads a rotated certificate (new connections on both ports
show the new serial), SIGTERM still exits 0; an expired certificate at start is one
line naming node.crt and its dates, exit 1. (The rotation under load and the refused
reloads: tests/zero/test_tls_reload.py.)"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

cryptography = pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from procs import FAST, REPO, clean_env, free_port, wait_for  # noqa: E402

UTC = datetime.timezone.utc


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CA:
    def __init__(self) -> None:
        now = datetime.datetime.now(UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "process test CA")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = _pem(self.cert)

    def write(self, d: Path, *, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> int:
        """ca.crt, node.crt (OU=zero, for localhost and 127.0.0.1), node.key into d,
        each replaced atomically; returns the serial."""
        now = datetime.datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "z1"),
                                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "zero")]))
                .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
                .not_valid_after(not_after or now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(self.key, hashes.SHA256()))
        d.mkdir(parents=True, exist_ok=True)
        for name, data in (("ca.crt", self.pem), ("node.key", _pem(key)), ("node.crt", _pem(cert))):
            tmp = d / (name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, d / name)
        return int(serial)


def served_serial(port: int, ca_pem: bytes, client: tuple[str, str] | None = None) -> int:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        ctx.load_cert_chain(*client)
        ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


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
    first = ca.write(d)
    grpc_port, http_port, live_port = free_port(), free_port(), free_port()
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

        wait_for(healthy, 30, "HTTPS /health 200")
        assert get(f"http://127.0.0.1:{http_port}/health")[0] == 0  # plain HTTP to the HTTPS port
        assert get(f"http://127.0.0.1:{live_port}/live") == (200, {"live": True, "raft_id": 1})
        client = (str(d / "node.crt"), str(d / "node.key"))  # a zero's certificate is a valid client too
        assert served_serial(http_port, ca.pem) == first
        assert served_serial(grpc_port, ca.pem, client) == first

        second = ca.write(d)
        proc.send_signal(signal.SIGHUP)
        client = (str(d / "node.crt"), str(d / "node.key"))
        wait_for(lambda: served_serial(http_port, ca.pem) == second, 10, "the new certificate on HTTPS")
        assert served_serial(grpc_port, ca.pem, client) == second
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
    ca.write(tmp_path / "expired", not_before=nb, not_after=na)
    p = subprocess.run([sys.executable, "-m", "zero", "run", "--data-dir", str(tmp_path / "z2"),
                        "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                        "--tls-dir", str(tmp_path / "expired"), "--log-format", "json"],
                       cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if "cannot start" in ln]
    assert str(tmp_path / "expired" / "node.crt") in line and "has expired" in line
    assert f"{nb:%Y-%m-%d %H:%M:%S} UTC until {na:%Y-%m-%d %H:%M:%S} UTC" in line, line
    assert "Traceback" not in p.stderr
