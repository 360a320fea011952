"""The listening side of the peer wire: framed RaftBatches from other zeros over plain TCP
(TLS with --tls-dir), on a port of its own that the gRPC handshake names
(zero/replica/transport.py says why and how).

Each connection is an asyncio Protocol: bytes are cut into frames (zero/replica/wire.py)
as they arrive, each frame's RaftBatch is admitted by the transport's rules
(Transport.admit: cluster id, receiver, membership, removal - the same as on the gRPC
stream, frame by frame) and its messages are stepped at once. A refusal is answered
with a RaftStreamResponse frame naming it, and the connection closed, as the gRPC
stream ends with it. A corrupt stream (bad CRC, oversized frame, wrong magic, a payload
that is no RaftBatch) or a certificate without the zero role closes the connection,
counted in zero_peer_wire_errors{reason} and logged; so does a frame while the node's
Raft is not running (before it started, or stopping), quietly.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter

from raftcore import raftpb

from zero.log import Logger
from zero.metrics import Metrics
from zero.net import bind_tcp
from zero.pb import raft_transport_pb2 as tpb
from zero.replica.wire import FrameError, FrameReader, frame
from zero.replica.wire_tls import RAFT_ROLES, WireTls, cert_roles

__all__ = ["WireServer", "WireTarget", "wire_errors"]

_ERRORS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def wire_errors(metrics: Metrics) -> Counter:
    """zero_peer_wire_errors{reason} of this zero's registry (made on first use)."""
    c = _ERRORS.get(metrics.registry)
    if c is None:
        c = _ERRORS[metrics.registry] = Counter(
            "zero_peer_wire_errors", "Peer wire connections dropped: corrupt stream (crc, oversize, magic, "
            "decode), certificate role", ["reason"], registry=metrics.registry)
    return c


class WireTarget(Protocol):
    """What the listener needs of its transport (Transport implements it)."""

    @property
    def log(self) -> Logger: ...
    @property
    def metrics(self) -> Metrics: ...
    def admit(self, protocol: int, cluster_id: str, from_id: int, to_id: int) -> tuple[int, str]: ...
    def deliver(self, from_id: int, messages: Iterable[raftpb.Message]) -> None: ...


class _Conn(asyncio.Protocol):
    def __init__(self, server: WireServer) -> None:
        self.s = server
        self.reader = FrameReader(expect_magic=True)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = str(transport.get_extra_info("peername"))
        self.s.conns.add(self)
        if self.s.tls is not None:
            roles = cert_roles(transport.get_extra_info("peercert"))
            if not roles & RAFT_ROLES:
                self._drop("role", f"a certificate with role {' or '.join(sorted(roles)) or 'none'} may not "
                                   f"send Raft messages (allowed: zero; the role is the certificate subject's OU)")

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            payloads = self.reader.feed(data)
        except FrameError as e:
            self._drop(e.reason, str(e))
            return
        t = self.s.target
        for p in payloads:
            if not self.s.started():  # not yet, or stopping: nothing to step into
                t.log.debug("peer wire frame while raft is not running", remote=self.peer)
                self._close(None)
                return
            batch = tpb.RaftBatch()
            try:
                batch.ParseFromString(p)
            except DecodeError:
                self._drop("decode", "a frame's payload is not a RaftBatch")
                return
            refusal, why = t.admit(batch.protocol, batch.cluster_id, batch.from_id, batch.to_id)
            if refusal != tpb.RaftStreamResponse.ACCEPTED:
                t.log.debug("refused peer stream", peer=batch.from_id, reason=why, link="wire")
                self._close(tpb.RaftStreamResponse(refusal=refusal, message=why))  # type: ignore[arg-type]
                return
            t.deliver(batch.from_id, batch.messages)

    def _drop(self, reason: str, why: str) -> None:
        wire_errors(self.s.target.metrics).labels(reason).inc()
        self.s.target.log.warning("peer wire connection dropped", reason=why, remote=self.peer)
        self._close(None)

    def _close(self, answer: tpb.RaftStreamResponse | None) -> None:
        self.done = True
        if self.transport is not None:
            if answer is not None:
                self.transport.write(frame(answer.SerializeToString()))
            self.transport.close()  # flushes the answer first

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.s.conns.discard(self)


class WireServer:
    """The wire listener of one zero."""

    def __init__(self, target: WireTarget, *, started: Callable[[], bool], tls: WireTls | None) -> None:
        self.target = target
        self.started = started
        self.tls = tls
        self.conns: set[_Conn] = set()
        self._servers: list[asyncio.Server] = []
        self.port = 0

    async def listen(self, host: str) -> int:
        """Listen on a free port of `host` (every address it resolves to); the port."""
        loop = asyncio.get_running_loop()
        socks = bind_tcp(f"[{host}]:0" if ":" in host else f"{host}:0")
        ctx = self.tls.server_context() if self.tls is not None else None
        try:
            for sock in socks:
                self._servers.append(await loop.create_server(lambda: _Conn(self), sock=sock, ssl=ctx))
        except BaseException:
            for sock in socks:
                sock.close()
            await self.close()
            raise
        self.port = int(socks[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
