"""The dialling side of the peer wire: one TCP (TLS with --tls-dir) connection to a peer's
wire listener (zero/replica/wire_server.py), written without awaiting.

`write` frames a serialized RaftBatch and hands it to asyncio's transport, which sends
at once when the socket takes it and buffers otherwise; nothing waits for a peer. Above
the high-water mark of that buffer the link is `paused` (its owner keeps messages in its
own bounded queue meanwhile) and `on_writable` is called when it drains. The listener
answers only to refuse (a RaftStreamResponse frame, then it closes).

When the connection ends, `ended` resolves. `lost` says it ended without a refusal and
without this side closing it: reset by the peer (its process is gone), or closed by it
(EOF) - what the crash failover (zero/replica/failover.py) acts on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from zero.pb import raft_transport_pb2 as tpb
from zero.replica.wire import MAGIC, FrameError, FrameReader, frame

__all__ = ["WireLink", "HIGH_WATER"]

HIGH_WATER = 4 << 20  # bytes buffered for the socket before the link pauses


class WireLink(asyncio.Protocol):
    """One connection to a peer's wire listener."""

    def __init__(self, on_writable: Callable[[], None]) -> None:
        self.on_writable = on_writable
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader(expect_magic=False)
        self.paused_since: float | None = None  # time.monotonic() since the buffer was full
        self.refusal: tpb.RaftStreamResponse | None = None
        self.error = ""  # why it ended, for the log
        self.closing = False  # this side closed it
        self.lost = False
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        transport.write(MAGIC)

    def write(self, payload: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(frame(payload))

    def pause_writing(self) -> None:
        self.paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self.paused_since = None
        self.on_writable()

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.reader.feed(data)
        except FrameError as e:
            self.close(f"the peer's answer is corrupt: {e}")
            return
        for p in payloads:
            resp = tpb.RaftStreamResponse()
            try:
                resp.ParseFromString(p)
            except Exception:
                self.close("the peer's answer is not a RaftStreamResponse")
                return
            if resp.refusal != tpb.RaftStreamResponse.ACCEPTED:
                self.refusal = resp
                self.close("refused")
                return

    def eof_received(self) -> bool | None:
        if not self.closing and self.refusal is None:
            self.lost = True
            self.error = self.error or "closed by the peer"
        return None  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.closing and self.refusal is None:
            self.lost = True
            self.error = self.error or repr(exc)
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self, why: str, *, abort: bool = False) -> None:
        """End the connection from this side (not a lost peer)."""
        self.closing = True
        self.error = self.error or why
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        elif not self.ended.done():
            self.ended.set_result(None)
