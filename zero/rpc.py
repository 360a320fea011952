"""gRPC conventions every zero server and dialer shares: the one mapping of zero's
errors to gRPC statuses, the one reading of a failed call's status, and the channel
options of every dialer.

gRPC's own reconnect backoff starts at 1 s and grows 1.6x up to 2 minutes while an
address refuses connections, failing calls fast meanwhile: a peer, data node or zero
that was down for a few seconds would stay unreachable for seconds (up to minutes) after
it is back. Every channel zero opens caps it at 1 s; zero's own retry loops add the
jitter.
"""

from __future__ import annotations

import grpc

from zero.errors import ZeroError

__all__ = ["RECONNECT_OPTIONS", "status_of", "code_of", "BROKEN_STREAM_DETAILS"]

# grpc-python's asyncio client reports a request written into a stream call the server
# had just ended as INTERNAL with these details (grpc/aio/_call.py `_write`: a
# cygrpc.InternalError becomes `set_internal_error`), in place of the status the server
# ended the call with. It happens when a zero ends a stream in the instant its client
# writes (a leader stepping down closes its TimestampStreams): the call broke, its
# outcome is unknown, exactly as for UNAVAILABLE.
BROKEN_STREAM_DETAILS = "Internal error from Core"

RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def code_of(e: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """A failed call's status code, as every retry decision reads it: a stream that
    broke under a request write (BROKEN_STREAM_DETAILS) is UNAVAILABLE, not INTERNAL."""
    code = e.code()
    if code == grpc.StatusCode.INTERNAL and e.details() == BROKEN_STREAM_DETAILS:
        return grpc.StatusCode.UNAVAILABLE
    return code


def status_of(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for an error raised by a servicer (the one mapping)."""
    if isinstance(err, ZeroError):
        code = getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN)
        return code, str(err) or type(err).__name__
    return grpc.StatusCode.INTERNAL, f"internal error in zero: {type(err).__name__}: {err}"
