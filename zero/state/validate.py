"""Input validation and the errors zero's state machine raises, in one place.

Every check here is pure: it returns the normalised value or raises an InvalidArgumentError
whose message says which input is wrong and why. The gRPC layer runs these on requests
before proposing anything, and zero/state/machine.py runs them again inside apply() so that a
malformed proposal — from any proposer, of any version — changes nothing.

The error classes live in zero/errors.py (re-exported here).
"""

from __future__ import annotations

import re
import unicodedata

from zero.errors import (
    ApplyOrderError,
    CorruptStateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ZeroError,
)

__all__ = [
    "ZeroError",
    "InvalidArgumentError",
    "NotFoundError",
    "FailedPreconditionError",
    "CorruptStateError",
    "ApplyOrderError",
    "MAX_TABLET_NAME_BYTES",
    "MAX_COUNT",
    "MAX_CLUSTER_ID_CHARS",
    "MAX_DEDUP_KEY_CHARS",
    "tablet_name",
    "new_tablet_name",
    "count",
    "address",
    "group_id",
    "cluster_id",
    "dedup_key",
    "tablet_size",
]

MAX_TABLET_NAME_BYTES = 1024  # SPEC: huge names are malformed input
MAX_COUNT = 1_000_000  # SPEC: counts are 1..1,000,000 per request
MAX_CLUSTER_ID_CHARS = 128
MAX_DEDUP_KEY_CHARS = 256
UINT32_MAX = (1 << 32) - 1
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def new_tablet_name(name: str) -> str:
    """A name for a tablet being created (a claim): `tablet_name`, not only whitespace,
    and without control characters (NUL, newline, tab, DEL, C1; also the Unicode line
    and paragraph separators): such names cannot be told apart in logs, the admin CLI or
    the status page. Checked at the API only: apply() keeps `tablet_name`'s rules, so a
    log written by an older release replays to the same state."""
    if name and name.isspace():
        raise InvalidArgumentError(f"tablet name {name!r} is only whitespace")
    for i, c in enumerate(name):
        if unicodedata.category(c) in _CONTROL_CATEGORIES:
            raise InvalidArgumentError(f"tablet name {name[:64]!r} has a control character "
                                       f"(U+{ord(c):04X} at {i}); names must be printable")
    return tablet_name(name)


def tablet_name(name: str) -> str:
    """A tablet (predicate) name: non-empty, valid UTF-8, at most 1 KiB encoded (the rule
    apply() checks; new names must also pass `new_tablet_name`)."""
    if not name:
        raise InvalidArgumentError("tablet name is empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(f"tablet name is not valid UTF-8 ({e.reason} at {e.start})") from None
    if size > MAX_TABLET_NAME_BYTES:
        raise InvalidArgumentError(
            f"tablet name is {size} bytes; at most {MAX_TABLET_NAME_BYTES} are allowed")
    return name


def count(n: int, what: str = "count") -> int:
    """A requested number of ids or timestamps: 1..1,000,000."""
    if not 1 <= n <= MAX_COUNT:
        raise InvalidArgumentError(f"{what} is {n}; it must be between 1 and {MAX_COUNT:,}")
    return n


# A DNS name or IPv4 address (letters, digits, '-', '.', '_'), or a bracketed IPv6 address.
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]+)?\]")


def address(addr: str, what: str = "address", *, port_zero: bool = False) -> str:
    """HOST:PORT, with a port 1..65535 (0 too with port_zero: a listen address, any free
    port); an IPv6 host is bracketed ([::1]:5080). The host is required (":5080" is
    refused, not read as localhost) and there is no default port."""
    if not addr:
        raise InvalidArgumentError(f"{what} is empty: give HOST:PORT (e.g. localhost:5080)")
    host, sep, port = addr.rpartition(":")
    if not sep or (addr.startswith("[") and addr.endswith("]")):
        raise InvalidArgumentError(f"{what} {addr!r} has no port: give HOST:PORT (e.g. {addr}:5080)")
    if not port.isascii() or not port.isdigit() or not (0 if port_zero else 1) <= int(port) <= 65535:
        raise InvalidArgumentError(f"{what} {addr!r} has an invalid port {port!r} "
                                   f"({'0' if port_zero else '1'}..65535)")
    if not host:
        raise InvalidArgumentError(f"{what} {addr!r} has no host: give HOST:PORT (e.g. localhost{addr})")
    if not (_HOST.fullmatch(host) or _IPV6.fullmatch(host)):
        raise InvalidArgumentError(f"{what} {addr!r} has an invalid host {host!r}")
    return addr


def group_id(gid: int, what: str = "group id") -> int:
    """A data-node group id: 1..2^32-1 (0 means "none" or "a zero" and is refused here)."""
    if not 1 <= gid <= UINT32_MAX:
        raise InvalidArgumentError(f"{what} is {gid}; it must be between 1 and {UINT32_MAX}")
    return gid


def cluster_id(cid: str) -> str:
    """A cluster id: 1..128 printable characters."""
    if not cid:
        raise InvalidArgumentError("cluster id is empty")
    if len(cid) > MAX_CLUSTER_ID_CHARS or not cid.isprintable():
        raise InvalidArgumentError(
            f"cluster id must be at most {MAX_CLUSTER_ID_CHARS} printable characters")
    return cid


def dedup_key(key: str) -> str:
    """A proposal's dedup key: at most 256 characters (empty = no dedup)."""
    if len(key) > MAX_DEDUP_KEY_CHARS:
        raise InvalidArgumentError(
            f"proposal key is {len(key)} characters; at most {MAX_DEDUP_KEY_CHARS} are allowed")
    return key


def tablet_size(name: str, size: int) -> int:
    """A reported tablet size: not negative."""
    if size < 0:
        raise InvalidArgumentError(f"tablet {name!r} has a negative size {size}")
    return size


MAX_RATE = 1e12  # operations per second: anything above is a broken report


def rate(name: str, value: float) -> float:
    """A reported read or write rate (operations per second): finite, 0..1e12."""
    if not 0.0 <= value <= MAX_RATE:  # also refuses NaN
        raise InvalidArgumentError(f"tablet {name!r} has a rate {value} outside 0..{MAX_RATE:g} per second")
    return value
