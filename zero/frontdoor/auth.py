"""The admin token: ZeroAdmin calls, forced tablet assignments and Dgraph's HTTP verbs
carry `authorization: Bearer <token>` when zero runs with --admin-token.

With TLS, the caller's certificate role is checked first (zero/security.py); the token
is checked on top of it, so an operator can keep both factors.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from zero.errors import PermissionDeniedError, UnauthenticatedError

__all__ = ["check_admin"]


def check_admin(token: str | None, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
    """Raise unless `metadata` carries `authorization: Bearer <token>` (no token set:
    admin calls are open). The comparison takes the same time whatever the guess."""
    if not token:
        return
    got = None
    for key, value in metadata or ():
        if key == "authorization":
            got = value if isinstance(value, str) else value.decode("ascii", "replace")
            break
    if got is None:
        raise UnauthenticatedError("this call needs the admin token: send metadata 'authorization: Bearer <token>'")
    scheme, _, presented = got.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise UnauthenticatedError("the authorization metadata must be 'Bearer <token>'")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise PermissionDeniedError("the admin token is wrong")
