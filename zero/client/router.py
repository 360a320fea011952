"""Router: where a client's calls to zero go, and the unary call with leader discovery
and retries that everything else in zero.client builds on.

It keeps one channel per zero address and a current target. A call answered UNAVAILABLE
(no leader or quorum, or the zero is unreachable), CANCELLED by the server or past its
deadline moves the target — to the leader a non-leader names in its `zero-leader-addr`
trailer, else to the next address — and is retried after a jittered exponential backoff
until the retry deadline; any other error is the caller's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from zero.pb import zero_pb2_grpc
from zero.rpc import RECONNECT_OPTIONS, code_of

__all__ = ["Router", "RETRYABLE"]

# UNAVAILABLE: no leader/quorum, or the zero is unreachable. CANCELLED reaches a client
# as an error only when the server cancelled the call (a zero shutting down with the call
# in flight); the client's own cancellation raises asyncio.CancelledError instead.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


class Router:
    """The zeros a client knows, the one it calls now, and the channels to them."""

    def __init__(self, addrs: Sequence[str], *, credentials: grpc.ChannelCredentials | None,
                 admin_token: str | None, rpc_timeout: float, retry_deadline: float, rng: random.Random) -> None:
        if not addrs:
            raise ValueError("ZeroClient needs at least one zero address")
        self._addrs = list(addrs)
        self._target = self._addrs[0]
        self._creds = credentials
        self._token = admin_token
        self.rpc_timeout = rpc_timeout
        self.retry_deadline = retry_deadline
        self._rng = rng
        self._channels: dict[str, grpc.aio.Channel] = {}
        # Set when the client closes: retry loops stop at their next failure.
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            # A zero back from an outage is reached within a second (zero/rpc.py).
            opts = [("grpc.max_receive_message_length", 64 << 20), *RECONNECT_OPTIONS]
            if self._creds is not None:
                ch = grpc.aio.secure_channel(addr, self._creds, options=opts)
            else:
                ch = grpc.aio.insecure_channel(addr, options=opts)
            self._channels[addr] = ch
        return ch

    def stub(self) -> zero_pb2_grpc.ZeroStub:
        """The Zero service at the current target."""
        return zero_pb2_grpc.ZeroStub(self._channel(self._target))

    def _admin_stub(self) -> zero_pb2_grpc.ZeroAdminStub:
        return zero_pb2_grpc.ZeroAdminStub(self._channel(self._target))

    def _metadata(self, admin: bool) -> list[tuple[str, str]] | None:
        if admin and self._token:
            return [("authorization", f"Bearer {self._token}")]
        return None

    def redirect(self, err: grpc.aio.AioRpcError) -> None:
        """Follow a non-leader's hint, else try the next address."""
        hint = ""
        for k, v in (err.trailing_metadata() or ()):
            if k == "zero-leader-addr":
                hint = v if isinstance(v, str) else v.decode()
        if hint and hint != self._target:
            if hint not in self._addrs:
                self._addrs.append(hint)
            self._target = hint
        else:
            i = self._addrs.index(self._target) if self._target in self._addrs else -1
            self._target = self._addrs[(i + 1) % len(self._addrs)]

    async def backoff(self, attempt: int) -> None:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^n)).
        await asyncio.sleep(self._rng.uniform(0, min(1.0, 0.05 * (2 ** attempt))))

    async def call(self, method: str, request: Message, *, admin: bool = False,
                   timeout: float | None = None) -> Any:
        """A unary RPC (`method` of the Zero service, or ZeroAdmin with `admin`) with
        leader discovery and retries of UNAVAILABLE until the retry deadline; other
        errors are raised as grpc.aio.AioRpcError. The answer is the method's response
        message (its type follows from `method`, hence Any)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_deadline
        attempt = 0
        while True:
            stub = self._admin_stub() if admin else self.stub()
            try:
                return await getattr(stub, method)(request, timeout=timeout or self.rpc_timeout,
                                                   metadata=self._metadata(admin))
            except grpc.aio.AioRpcError as e:
                if code_of(e) not in RETRYABLE and e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                if self.closed or loop.time() >= deadline:
                    raise
                self.redirect(e)
                await self.backoff(attempt)
                attempt += 1
