"""gRPC conventions every zero server and dialer shares: the one mapping of zero's
errors to gRPC statuses, and the channel options of every dialer.

gRPC's own reconnect backoff starts at 1 s and grows 1.6x up to 2 minutes while an
address refuses connections, failing calls fast meanwhile: a peer, data node or zero
that was down for a few seconds would stay unreachable for seconds (up to minutes) after
it is back. Every channel zero opens caps it at 1 s; zero's own retry loops add the
jitter.
"""

from __future__ import annotations

import grpc

from zero.errors import ZeroError

__all__ = ["RECONNECT_OPTIONS", "status_of"]

RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def status_of(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for an error raised by a servicer (the one mapping)."""
    if isinstance(err, ZeroError):
        code = getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN)
        return code, str(err) or type(err).__name__
    return grpc.StatusCode.INTERNAL, f"internal error in zero: {type(err).__name__}: {err}"
