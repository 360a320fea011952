"""A userspace TCP proxy for delay, jitter, stalls and connection resets (issue 11).

The kernel here has no netem (../shared/notes/netns.md), so latency is added in
userspace. Each zero advertises (`--my`) the address of its own proxy listener, so every
connection a peer opens to it - Raft streams, forwarded requests, snapshot transfers,
join redirects - passes through the proxy, which forwards to the zero's real gRPC port.
Clients may go through "front" listeners too, whose target can change (a front is a
stable address in front of whichever zeros are members now).

Each connection belongs to a directed link `src -> dst`: `dst` is the listener's name
(the zero it leads to); `src` is the zero whose process owns the connecting socket,
looked up in /proc (everything runs on 127.0.0.1, so the dialer is a local process
whose pid we know), or "client". Bytes flowing back on that connection travel the
reverse link `dst -> src`, so a rule on one direction leaves the other untouched.

Rules, set at runtime from any thread ("*" matches any name; the most specific rule wins):
    delay(ms, jitter_ms, src, dst)  every chunk read is held ms +- jitter before it is
        written on. Within one TCP stream bytes keep their order (a chunk is never released
        before the one ahead of it), so jitter reorders messages only across connections,
        as a network would: a heartbeat to one follower overtakes an append to another.
    stall(src, dst)                 the link holds everything it reads until healed; the
        sender sees a slow peer, then TCP backpressure once the proxy's buffer is full.
    reset(src, dst)                 abort every matching connection now (an RST to both
        ends); the zeros reconnect through the proxy.
    heal()                          no delays, no stalls; held bytes flow again.

All listeners live on one asyncio loop in a daemon thread; the public methods are
thread-safe (rules are replaced whole, never mutated in place).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ProxyNet", "CLIENT", "ANY"]

CLIENT = "client"  # the source of a connection no known process owns
ANY = "*"
CHUNK = 1 << 16
BUFFER_CHUNKS = 256  # per direction of a connection; beyond it the proxy stops reading
_T = TypeVar("_T")


@dataclass(eq=False)
class _Conn:
    src: str
    dst: str
    transports: list[asyncio.WriteTransport] = field(default_factory=list)
    dead: bool = False

    def abort(self, rst: bool = False) -> None:
        self.dead = True
        for t in self.transports:
            if rst:
                sock = t.get_extra_info("socket")
                if sock is not None:
                    try:  # SO_LINGER 0: close sends an RST, as a dropped connection would
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
            t.abort()


def _match(rules: Mapping[tuple[str, str], _T], a: str, b: str) -> _T | None:
    for key in ((a, b), (a, ANY), (ANY, b), (ANY, ANY)):
        if key in rules:
            return rules[key]
    return None


class ProxyNet:
    """Named TCP listeners on 127.0.0.1 with per-link delay, stall and reset.

    `owners()` returns {pid: name} of the processes whose connections should be
    attributed to them (the zeros); it is called from a worker thread."""

    def __init__(self, *, owners: Callable[[], Mapping[int, str]] | None = None, seed: int = 0) -> None:
        self._owners = owners
        self._rng = random.Random(seed)  # used on the loop thread only
        self._servers: dict[str, asyncio.Server] = {}
        self._targets: dict[str, tuple[str, int]] = {}
        self._identify: set[str] = set()
        self.addrs: dict[str, str] = {}
        self._delays: dict[tuple[str, str], tuple[float, float]] = {}
        self._stalls: dict[tuple[str, str], bool] = {}
        self._conns: set[_Conn] = set()
        self.stats: Counter[str] = Counter()  # connections, resets, bytes, held_chunks, held_ms
        self.links: Counter[tuple[str, str]] = Counter()  # connections per (src, dst)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy-net", daemon=True)
        self._thread.start()

    # -- lifecycle -------------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def listen(self, name: str, target: str, *, identify: bool = True) -> str:
        """A listener `name` forwarding to `target` (HOST:PORT); returns its address.
        `identify`: attribute each connection to the process that opened it."""
        self.retarget(name, target)
        if identify:
            self._identify.add(name)

        async def start() -> asyncio.Server:
            return await asyncio.start_server(lambda r, w: self._handle(name, r, w), "127.0.0.1", 0)

        srv = self._run(start())
        self._servers[name] = srv
        port = srv.sockets[0].getsockname()[1]
        self.addrs[name] = f"127.0.0.1:{port}"
        return self.addrs[name]

    def retarget(self, name: str, target: str) -> None:
        """New connections to `name` go to `target`; open ones stay where they are."""
        host, _, port = target.rpartition(":")
        self._targets = {**self._targets, name: (host, int(port))}

    def target(self, name: str) -> str:
        host, port = self._targets[name]
        return f"{host}:{port}"

    def remove(self, name: str) -> None:
        """Stop listening as `name` and drop its connections (a zero that left)."""
        srv = self._servers.pop(name, None)
        self.addrs.pop(name, None)

        async def stop() -> None:
            if srv is not None:
                srv.close()
            for c in [c for c in self._conns if c.dst == name]:
                c.abort()

        self._run(stop())

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def stop() -> None:
            for srv in self._servers.values():
                srv.close()
            for c in list(self._conns):
                c.abort()
            await asyncio.sleep(0.05)
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self._run(stop())
        finally:
            self._servers.clear()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    # -- rules (any thread) ----------------------------------------------------------------------
    def delay(self, ms: float, jitter_ms: float = 0.0, src: str = ANY, dst: str = ANY) -> None:
        self._delays = {**self._delays, (src, dst): (float(ms), float(jitter_ms))}

    def stall(self, src: str = ANY, dst: str = ANY) -> None:
        self._stalls = {**self._stalls, (src, dst): True}

    def heal(self) -> None:
        self._delays = {}
        self._stalls = {}

    def reset(self, src: str = ANY, dst: str = ANY) -> int:
        """Abort every connection on link src -> dst (either direction matches); how many."""
        def hit(c: _Conn) -> bool:
            return any((src in (ANY, a)) and (dst in (ANY, b)) for a, b in ((c.src, c.dst), (c.dst, c.src)))

        async def go() -> int:
            got = [c for c in self._conns if hit(c)]
            for c in got:
                c.abort(rst=True)
            self.stats["resets"] += len(got)
            return len(got)

        return self._run(go())

    def connections(self) -> list[tuple[str, str]]:
        return [(c.src, c.dst) for c in list(self._conns) if not c.dead]

    # -- the data path (loop thread) -------------------------------------------------------------
    def _latency(self, a: str, b: str) -> float:
        rule = _match(self._delays, a, b)
        if rule is None:
            return 0.0
        ms, jitter = rule
        return max(0.0, ms + self._rng.uniform(-jitter, jitter)) / 1000.0

    def _stalled(self, a: str, b: str) -> bool:
        return bool(_match(self._stalls, a, b))

    async def _handle(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        src = CLIENT
        if name in self._identify and self._owners is not None:
            peer = writer.get_extra_info("peername")
            here = writer.get_extra_info("sockname")
            try:
                found: str | None = await loop.run_in_executor(None, self._owner, peer[1], here[1])
                src = found or CLIENT
            except Exception:  # noqa: BLE001 - attribution is best effort
                src = CLIENT
        host, port = self._targets[name]
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()  # the zero is down: the dialer sees the connection drop
            return
        conn = _Conn(src, name, [writer.transport, uw.transport])
        self._conns.add(conn)
        self.stats["connections"] += 1
        self.links[(src, name)] += 1
        try:
            await asyncio.gather(self._pump(conn, reader, uw, src, name), self._pump(conn, ur, writer, name, src))
        finally:
            self._conns.discard(conn)
            for w in (writer, uw):
                w.close()

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    a: str, b: str) -> None:
        """Copy reader -> writer on link a -> b, holding each chunk for the link's latency
        and while the link is stalled."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(BUFFER_CHUNKS)

        async def read() -> None:
            last = 0.0
            try:
                while not conn.dead:
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    d = self._latency(a, b)
                    if d > 0:
                        self.stats["held_chunks"] += 1
                        self.stats["held_ms"] += int(d * 1000)
                    last = max(last, loop.time() + d)  # never before the chunk ahead of it
                    await q.put((last, data))
            except (OSError, asyncio.IncompleteReadError):
                conn.abort()
            finally:
                await q.put(None)

        async def write() -> None:
            eof = False
            while True:
                item = await q.get()
                if item is None:
                    eof = True
                    break
                if conn.dead:
                    continue  # drain, so the reader never blocks on a full queue
                release, data = item
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self._stalled(a, b) and not conn.dead:
                    await asyncio.sleep(0.01)
                if conn.dead:
                    continue
                try:
                    writer.write(data)
                    await writer.drain()
                    self.stats["bytes"] += len(data)
                except (OSError, RuntimeError):
                    conn.abort()
            if eof and not conn.dead:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()  # a half-close travels on
                except (OSError, RuntimeError):
                    conn.abort()

        await asyncio.gather(read(), write())

    # -- who opened a connection (worker thread) -------------------------------------------------
    def _owner(self, client_port: int, server_port: int) -> str | None:
        """The name of the known process that owns the socket 127.0.0.1:client_port
        connected to our server_port: its inode from /proc/net/tcp, then the process
        holding that inode among its fds."""
        inode = _socket_inode(client_port, server_port)
        if not inode:
            return None
        want = f"socket:[{inode}]"
        assert self._owners is not None
        for pid, name in dict(self._owners()).items():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                        return name
                except OSError:
                    continue
        return None


def _socket_inode(local_port: int, remote_port: int, tries: int = 3) -> str | None:
    for attempt in range(tries):
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f, None)
                    for line in f:
                        parts = line.split()
                        if len(parts) < 10:
                            continue
                        lp = int(parts[1].rsplit(":", 1)[1], 16)
                        rp = int(parts[2].rsplit(":", 1)[1], 16)
                        if lp == local_port and rp == remote_port and parts[9] != "0":
                            return parts[9]
            except OSError:
                continue
        time.sleep(0.005 * (attempt + 1))
    return None
