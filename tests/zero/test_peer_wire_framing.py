"""The peer wire's framing (zero/replica/wire.py): whole frames only, in any split; a torn
frame waits; a bad CRC, an oversized length or a wrong magic is an error after which
nothing more is handed out. And the listener (zero/replica/wire_server.py) on a real
socket: a corrupt frame drops the connection and is counted, its messages never stepped."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from raftcore import raftpb
from support.aio import until
from zero.pb import raft_transport_pb2 as tpb
from zero.replica.peer import PROTOCOL
from zero.replica.wire import HEADER, MAGIC, FrameError, FrameReader, frame
from zero.replica.wire_server import WireServer, wire_errors

from test_transport import CID, FakeNode

pytestmark = pytest.mark.timeout(30)


def test_frames_come_out_whole_whatever_the_split():
    payloads = [b"", b"a", bytes(range(256)) * 40, b"last"]
    stream = MAGIC + b"".join(frame(p) for p in payloads)
    rng = random.Random(7)
    for _ in range(50):
        r = FrameReader(expect_magic=True)
        out: list[bytes] = []
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, 300)
            out += r.feed(stream[pos:pos + n])
            pos += n
        assert out == payloads
        assert r.pending == 0


def test_a_torn_frame_waits_for_the_rest():
    r = FrameReader(expect_magic=False)
    f = frame(b"hello world")
    assert r.feed(f[:3]) == []  # not even a header
    assert r.feed(f[3:-1]) == []  # the header, not all of the payload
    assert r.pending == len(f) - 1
    assert r.feed(f[-1:]) == [b"hello world"]


def test_a_bad_crc_is_an_error_and_nothing_after_it_comes_out():
    good, bad = frame(b"first"), bytearray(frame(b"second"))
    bad[-1] ^= 0x01  # a flipped bit in the payload
    r = FrameReader(expect_magic=False)
    assert r.feed(good) == [b"first"]
    with pytest.raises(FrameError) as e:
        r.feed(bytes(bad) + frame(b"third"))
    assert e.value.reason == "crc"
    with pytest.raises(FrameError):
        r.feed(frame(b"fourth"))  # the stream is dead


def test_oversized_frames_and_wrong_magic_are_errors():
    r = FrameReader(expect_magic=False, max_frame=100)
    with pytest.raises(FrameError) as e:
        r.feed(HEADER.pack(101, 0))  # refused from the header alone, before any payload
    assert e.value.reason == "oversize"
    with pytest.raises(FrameError) as e:
        FrameReader(expect_magic=True).feed(b"PRI * HTTP/2.0\r\n")
    assert e.value.reason == "magic"
    assert FrameReader(expect_magic=True).feed(MAGIC[:3]) == []  # a magic in pieces is fine
    with pytest.raises(ValueError):
        frame(b"x" * (64 << 20) + b"x")


def _batch(*commits: int) -> bytes:
    return tpb.RaftBatch(protocol=PROTOCOL, cluster_id=CID, from_id=1, to_id=2, messages=[
        raftpb.Message(type=raftpb.MsgHeartbeat, to=2, from_=1, term=1, commit=c) for c in commits]).SerializeToString()


def test_the_listener_steps_whole_frames_and_drops_a_corrupt_connection():
    async def main() -> None:
        b = FakeNode(2, {1: "h1:1", 2: "h2:1"})
        server = WireServer(b.transport, started=lambda: True, tls=None)
        port = await server.listen("127.0.0.1")
        loop = asyncio.get_running_loop()

        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        good = frame(_batch(1, 2))
        torn = frame(_batch(3))
        await loop.sock_sendall(sock, MAGIC + good + torn[:len(torn) // 2])
        await until(lambda: len(b.stepped) == 2, 10)
        await asyncio.sleep(0.1)
        assert [m.commit for m in b.stepped] == [1, 2]  # the torn one waits
        bad = bytearray(frame(_batch(4)))
        bad[HEADER.size + 3] ^= 0xFF
        await loop.sock_sendall(sock, torn[len(torn) // 2:] + bytes(bad) + frame(_batch(5)))
        # The listener closes the connection: the dialler reads EOF.
        assert await asyncio.wait_for(loop.sock_recv(sock, 100), 5) == b""
        sock.close()
        errors = wire_errors(b.metrics)
        assert errors.labels("crc")._value.get() == 1
        # The completed torn frame came through whole; nothing of the corrupt one nor after it.
        assert [m.commit for m in b.stepped] in ([1, 2, 3], [1, 2])
        assert all(m.commit not in (4, 5) for m in b.stepped)

        # Another cluster's batch is answered with its refusal, then the connection closes.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        other = tpb.RaftBatch(protocol=PROTOCOL, cluster_id="another", from_id=1, to_id=2).SerializeToString()
        await loop.sock_sendall(sock, MAGIC + frame(other))
        got = b""
        while True:
            piece = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            if not piece:
                break
            got += piece
        sock.close()
        (answer,) = FrameReader(expect_magic=False).feed(got)
        resp = tpb.RaftStreamResponse.FromString(answer)
        assert resp.refusal == tpb.RaftStreamResponse.CLUSTER_MISMATCH and "belongs to cluster" in resp.message

        # Not the wire at all (an HTTP/2 client): dropped and counted.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        await loop.sock_sendall(sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert await asyncio.wait_for(loop.sock_recv(sock, 100), 5) == b""
        sock.close()
        assert errors.labels("magic")._value.get() == 1
        await server.close()
        await b.transport.stop()
    asyncio.run(main())
