"""`zero run` as a process: one ZeroApp started and stopped around the signals, and the
exit code (zero/cli.py documents the codes).

SIGTERM/SIGINT stop it gracefully at any stage, also while it starts (waiting for
--peer, joining, recovering the WAL): exit 0 with one log line. A second signal exits
at once (128 + N). With --tls-dir, SIGHUP reloads the certificates. A StartupError is
one line on stderr and exit 1; so is a Raft loop that fails or this zero's removal from
the cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TextIO

from zero.app import StartupError, ZeroApp
from zero.config import RunConfig

__all__ = ["run"]


async def run(cfg: RunConfig, *, log_stream: TextIO | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code. The handlers are in place
    before anything starts: a signal while starting (waiting for --peer, joining,
    recovering the WAL) cancels the start, which undoes what it did, and exits 0 with one
    log line, as a signal while running does. A second signal exits at once (128 + N)."""
    app = ZeroApp(cfg, log_stream=log_stream)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if signals:  # a second signal: stop waiting for the graceful path
            os._exit(128 + sig.value)
        signals.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    if cfg.tls_dir:  # SIGHUP reloads the certificates (without --tls-dir it keeps its default)
        loop.add_signal_handler(signal.SIGHUP, app.reload_tls, "SIGHUP")
    starting = loop.create_task(app.start(), name="zero-start")
    stopping = loop.create_task(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()  # app.start() stops whatever it had started, then re-raises
        await asyncio.wait([starting])
    if starting.cancelled() or starting.exception() is not None:
        stopping.cancel()
        if starting.cancelled():
            if app.log is not None:
                app.log.info("stopped while starting", signal=signals[0] if signals else None)
            else:
                print(f"zero: stopped by {signals[0] if signals else 'a signal'} while starting",
                      file=sys.stderr, flush=True)
            return 0
        exc = starting.exception()
        if isinstance(exc, StartupError):
            print(f"zero: cannot start: {exc}", file=sys.stderr, flush=True)
            return 1
        assert exc is not None
        raise exc
    log = app.log
    assert log is not None  # made first thing in a start that succeeded
    failed = loop.create_task(app.failed.wait())
    removed = loop.create_task(app.node.removed.wait()) if app.node is not None else loop.create_future()
    await asyncio.wait([failed, stopping, removed], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if app.failed.is_set():
        code = 1
        log.error("the raft loop stopped; shutting down", error=repr(app.node.fatal if app.node else None))
    elif removed.done():
        code = 1
        reason = app.node.removed_reason if app.node is not None else ""
        log.error("this zero was removed from the cluster; exiting", reason=reason)
        print(f"zero: removed from the cluster: {reason}", file=sys.stderr, flush=True)
    else:
        log.info("shutting down", signal=signals[0] if signals else None)
    for t in (failed, stopping, removed):
        t.cancel()
    await app.stop()
    return code
