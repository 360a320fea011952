"""TLS of the peer wire with --tls-dir: the same files, CA and roles as the gRPC port.

The listener requires a client certificate signed by ca.crt (mutual TLS, as the gRPC
port) and then the `zero` role (the subject's OU; zero/security/roles.py: only zeros
may call zero.v1.Raft). The dialler checks the listener's certificate against ca.crt and
the host it dialled, and presents node.crt. Both follow reloads of the files
(zero/security/reload.py's ServerTls): a new connection uses the certificates current
when it is made; connections already up stay as they are, as on the gRPC port.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from typing import Any

from zero.security import SERVICE_ROLES, ROLES, ServerTls, TlsConfig
from zero.security.files import CERT_FILE, KEY_FILE

__all__ = ["WireTls", "cert_roles", "RAFT_ROLES"]

RAFT_ROLES = SERVICE_ROLES["zero.v1.Raft"]


def cert_roles(peercert: dict[str, Any] | None) -> frozenset[str]:
    """The roles of a certificate as ssl's getpeercert() gives it (its subject's OUs)."""
    roles: set[str] = set()
    subject: Iterable[Any] = (peercert or {}).get("subject", ())
    for rdn in subject:
        for key, value in rdn:
            if key == "organizationalUnitName":
                roles.add(str(value).strip().lower())
    return frozenset(roles & ROLES)


def _context(config: TlsConfig, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(config.dir, CERT_FILE), os.path.join(config.dir, KEY_FILE))
    ctx.load_verify_locations(cadata=config.ca.decode("ascii"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server:
        ctx.check_hostname = True
    return ctx


class WireTls:
    """The wire's SSL contexts, rebuilt when the ServerTls they follow reloads."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._made: dict[bool, tuple[TlsConfig, ssl.SSLContext]] = {}
        self._listening = self._current(True)
        self._listening.sni_callback = self._pick

    def _current(self, server: bool) -> ssl.SSLContext:
        config = self._tls.config
        made = self._made.get(server)
        if made is None or made[0] is not config:
            made = self._made[server] = (config, _context(config, server))
        return made[1]

    def server_context(self) -> ssl.SSLContext:
        """The listener's context: every handshake switches to the current certificates."""
        return self._listening

    def client_context(self) -> ssl.SSLContext:
        """For a connection dialled now."""
        return self._current(False)

    def _pick(self, sslobj: ssl.SSLSocket | ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        current = self._current(True)
        if current is not self._listening:
            try:
                sslobj.context = current
            except Exception:  # never fail a handshake here: it goes on with the first certificates
                pass
