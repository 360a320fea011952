"""gRPC channel options every zero dialer shares.

gRPC's own reconnect backoff starts at 1 s and grows 1.6x up to 2 minutes while an
address refuses connections, failing calls fast meanwhile: a peer, data node or zero
that was down for a few seconds would stay unreachable for seconds (up to minutes) after
it is back. Every channel zero opens caps it at 1 s; zero's own retry loops add the
jitter.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECONNECT_OPTIONS"]

RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
