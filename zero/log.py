"""structlog setup for one zero: JSON lines by default, console rendering on a TTY or
with `--log-format console`.

Every line carries the node's raft id (bound once) and its current Raft term (read by a
processor at the moment the line is written, so a line logged just after an election
names the new term). The logger is built per node, never through structlog's global
configuration, so several zeros in one test process keep their own context.

Levels: debug lines (raftcore's chatter, refused client requests) are dropped unless
`debug=True`; leadership changes, snapshots and errors are logged once each by the
module that sees them (zero/replica/node.py, zero/app.py, the gRPC interceptor).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Protocol, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["Logger", "make_logger", "LOG_FORMATS", "default_format"]


class Logger(Protocol):
    """The structlog bound-logger methods zero logs through: an event name, then the
    line's fields as keywords (`log.info("leader changed", term=3)`). Structlog's
    loggers fit, and a Logger fits raftcore.Logger, so one logger serves both.
    """

    def debug(self, event: str, *args: object, **kw: object) -> None: ...
    def info(self, event: str, *args: object, **kw: object) -> None: ...
    def warning(self, event: str, *args: object, **kw: object) -> None: ...
    def error(self, event: str, *args: object, **kw: object) -> None: ...
    def bind(self, **new_values: object) -> Logger: ...

LOG_FORMATS = ("json", "console")


def default_format(stream: TextIO | None = None) -> str:
    """console on an interactive terminal, JSON lines otherwise (files, containers)."""
    stream = stream or sys.stderr
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def make_logger(*, raft_id: int | Callable[[], int], fmt: str | None = None, term: Callable[[], int] | None = None,
                stream: TextIO | None = None, debug: bool = False) -> Logger:
    """A bound structlog logger writing to `stream` (stderr by default).

    `term` is called for every line; it returns the node's current term (0 before the
    node exists). `raft_id` may be a callable too: a joining zero learns its id from
    the cluster.
    """
    stream = stream or sys.stderr
    fmt = fmt or default_format(stream)
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    term_of = term or (lambda: 0)

    def add_term(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        # A "term" passed explicitly (e.g. a leadership change) wins over the current one.
        if "term" not in event:
            try:
                event["term"] = term_of()
            except Exception:  # the node is half-built or gone: never fail a log line
                event["term"] = 0
        return event

    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    id_of = raft_id if callable(raft_id) else (lambda: raft_id)

    def add_raft_id(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        try:
            event.setdefault("raft_id", id_of())
        except Exception:
            event.setdefault("raft_id", 0)
        return event

    processors: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_raft_id,
        add_term,
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
    processors.append(renderer)
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if debug else logging.INFO),
        cache_logger_on_first_use=True,
    )
    return cast(Logger, logger)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
