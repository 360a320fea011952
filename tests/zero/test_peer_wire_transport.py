"""Two transports over the peer wire (zero/replica/peer.py, wire_link.py, wire_server.py):
the gRPC handshake names the wire port and the link is the wire; batches arrive in
order; a lone commit-only append is held for the append that supersedes it; a refusal
on the wire is handled as on the stream; the peer's end of the connection closing is a
lost peer (what the crash failover acts on), this side closing it is not."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from raftcore import raftpb
from support import free_port
from support.aio import until
from zero.replica.raft_service import add_raft_service
from zero.replica.transport import GRPC_OPTIONS

from test_transport import FakeNode

pytestmark = pytest.mark.timeout(30)


class Node(FakeNode):
    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.lost: list[int] = []

    def peer_lost(self, rid: int) -> None:
        self.lost.append(rid)


async def _serve_wire(node: FakeNode) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    port = server.add_insecure_port("127.0.0.1:0")
    add_raft_service(server, node, node.transport)  # type: ignore[arg-type]
    addr = f"127.0.0.1:{port}"
    assert await node.transport.listen_wire(addr, port, addr, started=lambda: True)
    await server.start()
    return server, addr


def _app(index: int, commit: int, entries: int = 0) -> raftpb.Message:
    return raftpb.Message(type=raftpb.MsgApp, to=2, from_=1, term=1, index=index, commit=commit,
                          entries=[raftpb.Entry(index=index + 1 + i, term=1) for i in range(entries)])


def test_the_link_is_the_wire_batches_in_order_and_a_lone_commit_is_held():
    async def main() -> None:
        b = Node(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve_wire(b)
        a = Node(1, {1: "h1:1", 2: addr})
        a.transport.set_peers({2: addr})
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: len(b.stepped) == 1, 10)
        assert a.transport.peer_up(2) and b.transport.wire_port
        await server.stop(0)  # no gRPC from here on: what still arrives came over the wire
        for i in range(1, 51):  # in one event-loop turn: one frame, in order
            a.transport.send(_app(i, 0, entries=1))
        await until(lambda: len(b.stepped) == 51, 10)
        assert [m.index for m in b.stepped[1:]] == list(range(1, 51))
        # A lone commit-only append waits for the next append, which carries its commit.
        n = len(b.stepped)
        a.transport.send(_app(51, 51))
        await asyncio.sleep(0)
        a.transport.send(_app(51, 51, entries=1))
        await until(lambda: len(b.stepped) == n + 1, 10)
        await asyncio.sleep(0.05)
        assert [(m.commit, len(m.entries)) for m in b.stepped[n:]] == [(51, 1)]
        # Alone, it goes when the hold ends.
        a.transport.send(_app(52, 52))
        await until(lambda: len(b.stepped) == n + 2, 10)
        assert a.lost == []
        await a.transport.stop()
        await b.transport.stop()
    asyncio.run(main())


def test_the_peers_end_closing_is_a_lost_peer_and_a_removed_sender_is_told():
    async def main() -> None:
        b = Node(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve_wire(b)
        a = Node(1, {1: "h1:1", 2: addr})
        a.transport.set_peers({2: addr})
        a.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: a.transport.peer_up(2), 10)
        await b.transport.stop()  # the listener and its connections go, as a killed process's would
        await until(lambda: a.lost == [2], 10)
        await server.stop(0)
        await a.transport.stop()

        # A sender the receiver has removed is refused on the wire, mid-connection, and told so.
        c = Node(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve_wire(c)
        d = Node(1, {1: "h1:1", 2: addr})
        d.transport.set_peers({2: addr})
        d.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: d.transport.peer_up(2), 10)
        c.state = Node(2, {2: "h2:1"}, removed=(1,)).state  # the receiver learns that 1 was removed
        d.transport.send(raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1))
        await until(lambda: d.removed_reasons, 10)
        assert "was removed" in d.removed_reasons[0]
        assert d.metrics.peer_refusals.labels("2", "REMOVED")._value.get() >= 1
        assert d.lost == []  # a refusal is no crash
        await d.transport.stop()
        await c.transport.stop()
        await server.stop(0)
    asyncio.run(main())


def test_a_wire_port_that_does_not_answer_leaves_the_link_on_the_grpc_stream():
    """The handshake names a wire port a firewall does not let through (here: nothing
    listens there): the link is the gRPC stream, messages arrive in order, the failure is
    counted once, and the link is up — the cluster does not depend on the wire."""
    async def main() -> None:
        b = Node(2, {1: "h1:1", 2: "h2:1"})
        server, addr = await _serve_wire(b)
        b.transport.wire_port = free_port()  # offered in handshakes, answered by nobody
        a = Node(1, {1: "h1:1", 2: addr})
        a.transport.set_peers({2: addr})
        for i in range(1, 21):
            a.transport.send(_app(i, 0, entries=1))
        await until(lambda: len(b.stepped) == 20, 10)
        assert [m.index for m in b.stepped] == list(range(1, 21)) and a.transport.peer_up(2)
        got = a.metrics.registry.get_sample_value("zero_peer_wire_errors_total", {"reason": "unreachable"})
        assert got == 1, got
        await a.transport.stop()
        await b.transport.stop()
        await server.stop(0)
    asyncio.run(main())
