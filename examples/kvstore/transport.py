"""A minimal peer transport: raftpb.Message frames over asyncio TCP streams.

Each node listens on its raft address and keeps one outgoing connection to every peer;
a frame is a 4-byte big-endian length followed by a serialized raftpb.Message. Messages
go one way on a connection (we write on the ones we dial, read on the ones we accept),
so reading our own outgoing connection only ever returns EOF: that is how a dead peer
is noticed, and the dialer then reconnects with backoff.

Raft tolerates lost messages (it retries on heartbeats and probes), so send() never
waits: a message for a peer that is not connected, or whose send buffer is full, is
dropped and the node is told with report_unreachable() — the leader then stops
streaming appends to it and probes instead (etcd's transport does the same).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Coroutine, Iterable
from typing import Any

from google.protobuf.message import DecodeError

from raftcore import Node, NodeStoppedError, RaftError, SnapshotStatus, raftpb

__all__ = ["Transport"]

log = logging.getLogger("kvstore.transport")

_LEN = struct.Struct(">I")
# Larger frames are refused: a garbage length prefix must not make us allocate gigabytes.
MAX_FRAME = 512 << 20
# Bytes we let queue up for one peer before dropping messages to it.
MAX_BUFFERED = 16 << 20
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 1.0


class _Peer:
    __slots__ = ("id", "host", "port", "writer", "task")

    def __init__(self, node_id: int, host: str, port: int) -> None:
        self.id = node_id
        self.host = host
        self.port = port
        # Set while connected; send() writes to it directly.
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None


class Transport:
    def __init__(self, node: Node, self_id: int, peers: dict[int, tuple[str, int]]) -> None:
        self._node = node
        self._id = self_id
        self._peers = {i: _Peer(i, h, p) for i, (h, p) in peers.items() if i != self_id}
        self._listen = peers[self_id]
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._serve, host, port)
        for p in self._peers.values():
            p.task = asyncio.create_task(self._dial(p), name=f"dial-{p.id}")

    async def close(self) -> None:
        self._closing = True
        for p in self._peers.values():
            if p.task is not None:
                p.task.cancel()
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            self._server.close()
        for w in list(self._inbound):
            w.close()
        await asyncio.gather(*(p.task for p in self._peers.values() if p.task), *self._tasks,
                             return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- sending ------------------------------------------------------------------------
    def send(self, msgs: Iterable[raftpb.Message]) -> None:
        """Queue messages on their peers' connections, in order, without waiting.

        StreamWriter.write hands the bytes to the socket at once when nothing is queued,
        so they leave before the Ready loop goes on to its (blocking) disk write."""
        for m in msgs:
            p = self._peers.get(m.to)
            if p is None:
                log.warning("message %s to unknown node %d dropped", raftpb.MessageType.Name(m.type), m.to)
                continue
            w = p.writer
            if w is None or w.is_closing() or w.transport.get_write_buffer_size() > MAX_BUFFERED:
                self._dropped(m)
                continue
            data = m.SerializeToString()
            w.writelines((_LEN.pack(len(data)), data))
            if m.type == raftpb.MsgSnap:
                self._spawn(self._snapshot_sent(p.id, w))

    def _dropped(self, m: raftpb.Message) -> None:
        self._node.report_unreachable(m.to)
        if m.type == raftpb.MsgSnap:
            # The leader waits for this report before it sends the peer anything else.
            self._node.report_snapshot(m.to, SnapshotStatus.FAILURE)

    async def _snapshot_sent(self, peer_id: int, w: asyncio.StreamWriter) -> None:
        # drain() returns once the kernel took the bytes, not when the peer applied them;
        # good enough here: if the peer lost it, the leader's probes find out and resend.
        try:
            await w.drain()
        except (ConnectionError, OSError):
            self._node.report_snapshot(peer_id, SnapshotStatus.FAILURE)
        else:
            self._node.report_snapshot(peer_id, SnapshotStatus.FINISH)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _dial(self, p: _Peer) -> None:
        """Keep one connection to peer p, reconnecting with exponential backoff."""
        backoff = _BACKOFF_MIN
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
                # cancel of close() when the connection completes at that moment, and this
                # task would then wait forever on a peer that is stopping too.
                async with asyncio.timeout(1.0):
                    reader, writer = await asyncio.open_connection(p.host, p.port)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_MIN
            log.info("connected to peer %d at %s:%d", p.id, p.host, p.port)
            p.writer = writer
            try:
                await reader.read()  # the peer never writes here: this returns at EOF
            except (ConnectionError, OSError):
                pass
            finally:
                p.writer = None
                writer.close()
            log.info("lost connection to peer %d", p.id)

    # -- receiving ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted just as close() ran: nobody would close it later
            writer.close()
            return
        self._inbound.add(writer)
        try:
            while True:
                (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
                if n > MAX_FRAME:
                    log.warning("frame of %d bytes from %s refused; closing", n, writer.get_extra_info("peername"))
                    return
                m = raftpb.Message.FromString(await reader.readexactly(n))
                try:
                    self._node.step_nowait(m)
                except NodeStoppedError:
                    return
                except RaftError as e:  # e.g. a message type only the node itself may step
                    log.warning("message from %d refused: %s", m.from_, e)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the peer went away; it will dial again
        except DecodeError as e:
            log.warning("undecodable frame from %s (%s); closing", writer.get_extra_info("peername"), e)
        finally:
            self._inbound.discard(writer)
            writer.close()
