"""Mutual TLS and roles (SPEC "Processes, ports, CLI": `--tls-dir`; docs/DESIGN.md "Security").

`--tls-dir DIR` holds three PEM files, the same names on every zero, data node and admin
machine: ca.crt (the cluster's CA), node.crt (this process's certificate, signed by that
CA) and node.key (its private key). With it every gRPC connection is mutual TLS: a server
requires a client certificate signed by the CA (a plaintext client, or one without a
certificate, fails the handshake) and a client checks the server's certificate against
the CA and the name it dialled (node.crt needs a subjectAltName for every host name or IP
it is reached by). Without `--tls-dir` nothing here applies.

The modules, each one concept:
- certs: the certificates' serial numbers and dates (a small DER reader) and the date
  check at start;
- files: the files of a --tls-dir, checked and loaded (`load_tls`, `TlsConfig`);
- reload: the certificates `zero run` serves, on gRPC and HTTPS, reloaded on SIGHUP or a
  change of the files (`ServerTls`);
- roles: which certificate role (its subject's OU) may call which service.
"""

from zero.security.certs import CertInfo, TlsError, cert_infos, check_dates, format_utc
from zero.security.files import TLS_FILES, TlsConfig, check_tls_dir, load_tls, tls_signature
from zero.security.reload import ServerTls
from zero.security.roles import (
    FORCE_ROLES,
    ROLES,
    SERVICE_ROLES,
    AuthContext,
    RoleInterceptor,
    authorize,
    peer_roles,
    require_roles,
    subject_ous,
    wrap_handler,
)

__all__ = [
    "TLS_FILES",
    "ROLES",
    "SERVICE_ROLES",
    "FORCE_ROLES",
    "TlsConfig",
    "TlsError",
    "CertInfo",
    "cert_infos",
    "check_dates",
    "format_utc",
    "load_tls",
    "ServerTls",
    "tls_signature",
    "check_tls_dir",
    "subject_ous",
    "peer_roles",
    "AuthContext",
    "authorize",
    "require_roles",
    "RoleInterceptor",
    "wrap_handler",
]
