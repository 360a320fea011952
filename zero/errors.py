"""zero's errors, each naming the gRPC status it maps to.

``code`` is a ``grpc.StatusCode`` member name, so the one place that translates errors
to statuses (zero/rpc.py's ``status_of``) needs no table of its own, and the pure modules that raise
these (state, validate, leases) need no grpc import.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ZeroError",
    "InvalidArgumentError",
    "NotFoundError",
    "FailedPreconditionError",
    "CorruptStateError",
    "ApplyOrderError",
    "UnavailableError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "UnimplementedError",
]


class ZeroError(Exception):
    """Base class of the errors zero reports to its clients."""

    code: ClassVar[str] = "UNKNOWN"


class InvalidArgumentError(ZeroError, ValueError):
    """Malformed or out-of-range input."""

    code = "INVALID_ARGUMENT"


class NotFoundError(ZeroError, LookupError):
    """An unknown group, member, zero, tablet or move."""

    code = "NOT_FOUND"


class FailedPreconditionError(ZeroError):
    """The request conflicts with the state: removed id, address taken, move in progress,
    last member, stale move id, exhausted id space."""

    code = "FAILED_PRECONDITION"


class CorruptStateError(ZeroError, ValueError):
    """Snapshot or backup bytes that are not a valid zero state."""

    code = "DATA_LOSS"


class ApplyOrderError(ZeroError):
    """apply() was called with an index not above the last applied one: a caller bug."""

    code = "INTERNAL"


class UnavailableError(ZeroError):
    """No leader, no quorum, or a deadline inside zero: the client may retry."""

    code = "UNAVAILABLE"


class ResourceExhaustedError(ZeroError):
    """A slow stream consumer was dropped, or zero is overloaded."""

    code = "RESOURCE_EXHAUSTED"


class UnauthenticatedError(ZeroError):
    """An admin call without a token."""

    code = "UNAUTHENTICATED"


class PermissionDeniedError(ZeroError):
    """A wrong admin token or role."""

    code = "PERMISSION_DENIED"


class UnimplementedError(ZeroError):
    """A feature this zero does not offer (tablet moves or the rebalancer not enabled)."""

    code = "UNIMPLEMENTED"
