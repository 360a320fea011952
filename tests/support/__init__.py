"""What every test directory shares; tests/conftest.py puts tests/ on sys.path, so this
is `import support` from any test (and from bench scripts that put tests/ there).

- `until(predicate, timeout, interval=, message=)`: call `predicate` until it answers
  something truthy and return that answer; AssertionError after `timeout` seconds,
  naming what it waited for and the last answer. It blocks: for tests that drive
  processes or threads. `support.aio.until` is the same poll on the running event loop.
- `free_port()`, `free_ports(n)`: loopback ports the OS hands out (n of them distinct).
- `support.tls`: a test CA and its certificates (imports `cryptography`, the [test]
  extra; tests `pytest.importorskip` it first).

Every wait in the suite polls with a deadline; nothing sleeps for a fixed time hoping
a condition holds by then.
"""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["until", "free_port", "free_ports", "timed_out", "describe"]

T = TypeVar("T")

# Predicates in the blocking flavour mostly ask processes (gRPC, HTTP): 50 calls a second.
INTERVAL = 0.02


def until(predicate: Callable[[], T], timeout: float, *, interval: float = INTERVAL,
          message: str | None = None) -> T:
    """`predicate()` every `interval` s until it is truthy; returns that value. It is
    called once more after the deadline has passed before this gives up, so a slow
    machine never fails a condition it met during the last sleep."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise timed_out(predicate, timeout, message, got)
        time.sleep(interval)


def timed_out(predicate: Callable[..., Any], timeout: float, message: str | None, last: Any) -> AssertionError:
    """The error `until` raises: what was awaited (the message, else the predicate's
    source) and its last answer."""
    shown = repr(last)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return AssertionError(f"timed out after {timeout}s waiting for {message or describe(predicate)} "
                          f"(last answer: {shown})")


def describe(predicate: Callable[..., Any]) -> str:
    """A lambda's source text (one line, at most 200 characters), else the function's name."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if getattr(predicate, "__name__", "") != "<lambda>":
        return name
    try:
        text = " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return name
    return text if len(text) <= 200 else text[:200] + "..."


def free_port() -> int:
    """A port on 127.0.0.1 that was free when asked. To take several, use free_ports:
    two calls in a row may hand out the same port."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1 (held open together so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
