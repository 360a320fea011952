"""zero.client: the client data nodes use to talk to zero.

    async with ZeroClient(["zero1:5080", "zero2:5080", "zero3:5080"]) as zc:
        me = (await zc.connect("dn1:7080")).member      # joins a group
        zc.start_watch()                                # keep the shard map current
        await zc.wait_synced()
        gid = zc.group_for("name")                      # answered locally
        tablet = await zc.should_serve("name", me.group_id)
        ts = await zc.timestamp()                       # merged with concurrent callers
        uid = await zc.uid()                            # from a locally leased block

What it does for you:
- finds the leader among the addresses it is given, following the
  `zero-leader-addr` trailer of non-leaders, and retries UNAVAILABLE with jittered
  exponential backoff until a deadline;
- keeps the membership state current from StreamMembership, resuming from the last
  version it saw, and answers group_for(tablet) without a round trip;
- merges concurrent timestamp requests into one request per round trip on one
  long-lived TimestampStream, as TiKV PD's TSO client does: requests that arrive while
  one is in flight go in the next one, so a request that starts after another finished
  always gets a larger timestamp (unary Timestamps RPCs against a zero without the
  stream);
- leases UIDs in blocks and hands them out locally.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from zero.rpc import RECONNECT_OPTIONS
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.state.chunks import merge_chunk

__all__ = ["ZeroClient", "MembershipView", "RETRYABLE"]

# UNAVAILABLE: no leader/quorum, or the zero is unreachable. CANCELLED reaches a client
# as an error only when the server cancelled the call (a zero shutting down with the call
# in flight); the client's own cancellation raises asyncio.CancelledError instead.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
MAX_COUNT = 1_000_000


class MembershipView:
    """The membership state rebuilt from StreamMembership updates, with a tablet →
    group index."""

    def __init__(self) -> None:
        self.state: zero_pb2.MembershipState | None = None
        self.version = 0
        self.cluster_id = ""
        self._pending = zero_pb2.MembershipState()
        self._owner: dict[str, int] = {}

    def group_for(self, tablet: str) -> int:
        """The group serving `tablet` in the latest state seen; 0 when unowned."""
        return self._owner.get(tablet, 0)

    def feed(self, u: zero_pb2.MembershipUpdate) -> bool:
        """Apply one update; True when the view changed to a new complete state."""
        if u.full:
            merge_chunk(self._pending, u.state)
            if not u.last_chunk:
                return False
            self.state, self._pending = self._pending, zero_pb2.MembershipState()
            self._owner = {n: gid for gid, g in self.state.groups.items() for n in g.tablets}
        else:
            st = self.state
            if st is None:
                return False
            for gid, g in u.state.groups.items():
                dst = st.groups[gid]
                for mid, m in g.members.items():
                    dst.members[mid].CopyFrom(m)
                for name, t in g.tablets.items():
                    old = self._owner.get(name)
                    if old is not None and old != gid:
                        del st.groups[old].tablets[name]
                    dst.tablets[name].CopyFrom(t)
                    self._owner[name] = gid
            for zid, z in u.state.zeros.items():
                st.zeros[zid].CopyFrom(z)
            for name in u.removed_tablets:
                owner = self._owner.pop(name, 0)
                if owner:
                    del st.groups[owner].tablets[name]
            for mid in u.removed_members:
                for g in st.groups.values():
                    if mid in g.members:
                        del g.members[mid]
            for zid in u.removed_zeros:
                if zid in st.zeros:
                    del st.zeros[zid]
            for fd, value in u.state.ListFields():  # scalar header fields, current values
                if fd.message_type is None and not fd.is_repeated:
                    setattr(st, fd.name, value)
            st.version = u.version
        self.version, self.cluster_id = u.version, u.cluster_id
        return True


class ZeroClient:
    def __init__(self, addrs: Sequence[str] | str, *, credentials: grpc.ChannelCredentials | None = None,
                 admin_token: str | None = None, rpc_timeout: float = 5.0, retry_deadline: float = 15.0,
                 uid_block: int = 10_000, ts_pipeline: int = 2, rng: random.Random | None = None) -> None:
        if isinstance(addrs, str):
            addrs = [a for a in addrs.split(",") if a]
        if not addrs:
            raise ValueError("ZeroClient needs at least one zero address")
        self._addrs = list(addrs)
        self._target = self._addrs[0]
        self._creds = credentials
        self._token = admin_token
        self.rpc_timeout = rpc_timeout
        self.retry_deadline = retry_deadline
        self._rng = rng or random.Random()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closed = False
        # Timestamp merging.
        self._ts_waiting: list[asyncio.Future[int]] = []
        self._ts_tasks: set[asyncio.Task[None]] = set()  # unary Timestamps RPCs in flight
        self._ts_stream_task: asyncio.Task[None] | None = None  # drives the TimestampStream
        self._ts_use_stream = True  # False once a zero answered UNIMPLEMENTED (an older zero)
        self._ts_wake = asyncio.Event()  # callers are waiting, or a request slot freed up
        self._ts_answered = False  # the stream answered since the last failure
        self.ts_pipeline = ts_pipeline
        self.timestamp_rpcs = 0  # timestamp requests answered (stream messages or unary RPCs)
        # UID blocks.
        self._uid_block = uid_block
        self._uid_next = 0
        self._uid_end = -1
        self._uid_lock = asyncio.Lock()
        # The watched membership.
        self.view = MembershipView()
        self._synced = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._watchers: list[Callable[[MembershipView], None]] = []

    async def __aenter__(self) -> "ZeroClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for t in (self._watch_task, self._ts_stream_task, *self._ts_tasks):
            if t is not None:
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        for f in self._ts_waiting:
            if not f.done():
                f.set_exception(RuntimeError("ZeroClient closed"))
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    # -- channels and retries -------------------------------------------------------------------
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

    def _stub(self, admin: bool = False) -> Any:
        ch = self._channel(self._target)
        return zero_pb2_grpc.ZeroAdminStub(ch) if admin else zero_pb2_grpc.ZeroStub(ch)

    def _metadata(self, admin: bool) -> list[tuple[str, str]] | None:
        if admin and self._token:
            return [("authorization", f"Bearer {self._token}")]
        return None

    def _redirect(self, err: grpc.aio.AioRpcError) -> None:
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

    async def _backoff(self, attempt: int) -> None:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^n)).
        await asyncio.sleep(self._rng.uniform(0, min(1.0, 0.05 * (2 ** attempt))))

    async def call(self, method: str, request: Any, *, admin: bool = False, timeout: float | None = None) -> Any:
        """A unary RPC with leader discovery and retries of UNAVAILABLE until the
        retry deadline; other errors are raised as grpc.aio.AioRpcError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_deadline
        attempt = 0
        while True:
            stub = self._stub(admin)
            try:
                return await getattr(stub, method)(request, timeout=timeout or self.rpc_timeout,
                                                   metadata=self._metadata(admin))
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRYABLE and e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                if self._closed or loop.time() >= deadline:
                    raise
                self._redirect(e)
                await self._backoff(attempt)
                attempt += 1

    # -- the Zero service -------------------------------------------------------------------------
    async def connect(self, addr: str, *, group_id: int = 0, learner: bool = False,
                      member_id: int = 0) -> zero_pb2.ConnectResponse:
        r: zero_pb2.ConnectResponse = await self.call(
            "Connect", zero_pb2.ConnectRequest(id=member_id, addr=addr, group_id=group_id, learner=learner))
        return r

    async def heartbeat(self, member_id: int, group_id: int, *, leader: bool = False) -> None:
        await self.call("Heartbeat", zero_pb2.HeartbeatRequest(member_id=member_id, group_id=group_id,
                                                               leader=leader))

    async def should_serve(self, predicate: str, group_id: int = 0) -> zero_pb2.Tablet:
        r: zero_pb2.Tablet = await self.call("ShouldServe", zero_pb2.Tablet(predicate=predicate, group_id=group_id))
        return r

    async def tablets(self, predicates: Sequence[str], group_id: int = 0) -> list[zero_pb2.Tablet]:
        r = await self.call("Tablets", zero_pb2.TabletsRequest(
            tablets=[zero_pb2.Tablet(predicate=p, group_id=group_id) for p in predicates]))
        return list(r.tablets)

    async def update_tablet_sizes(self, group_id: int, sizes: dict[str, int]) -> None:
        await self.call("UpdateTabletSizes", zero_pb2.TabletSizes(group_id=group_id, sizes=sizes))

    async def get_state(self) -> zero_pb2.MembershipState:
        r: zero_pb2.MembershipState = await self.call("GetState", zero_pb2.GetStateRequest())
        return r

    async def assign_ids(self, kind: zero_pb2.IdKind, count: int) -> tuple[int, int]:
        r = await self.call("AssignIds", zero_pb2.AssignIdsRequest(kind=kind, count=count))
        return r.start_id, r.end_id

    async def timestamps(self, count: int) -> tuple[int, int]:
        r = await self.call("Timestamps", zero_pb2.TimestampsRequest(count=count))
        return r.start_id, r.end_id

    # -- merged timestamps ------------------------------------------------------------------------
    async def timestamp(self) -> int:
        """One timestamp, strictly larger than any timestamp handed out before this
        call began.

        Concurrent callers share requests: the callers waiting when a request is sent go
        in it, one request message on the client's TimestampStream (opened lazily on the
        current target, normally the leader; a follower relays it one hop), with at most
        `ts_pipeline` requests outstanding. A caller that arrives after another caller's
        batch completed is always in a later request — the batch completes only when its
        answer was read, so the later request is written after the zero handed that range
        out — and zero answers every request after a ReadIndex round that began after the
        request arrived, so the later caller gets a larger timestamp. A request retried
        after a failure (on a new stream, possibly at a new leader) is a new request sent
        later still, so the same holds. Against a zero that answers UNIMPLEMENTED (an
        older release) the client falls back to unary Timestamps RPCs, merged the same way.
        """
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._ts_waiting.append(fut)
        if not self._ts_use_stream:
            self._ts_pump()
        elif self._ts_stream_task is None or self._ts_stream_task.done():
            if not self._closed:
                self._ts_stream_task = asyncio.get_running_loop().create_task(self._ts_stream_run())
        else:
            self._ts_wake.set()
        return await fut

    def _ts_fail(self, err: BaseException) -> None:
        waiting = list(self._ts_waiting)
        self._ts_waiting.clear()  # in place: a stream session holds the list
        for f in waiting:
            if not f.done():
                f.set_exception(err)

    async def _ts_stream_run(self) -> None:
        """Keep a TimestampStream open while callers wait; on a failure, retry the
        unanswered callers as `call` retries a unary RPC: UNAVAILABLE (and a stream that
        stopped answering within `rpc_timeout`) with backoff and the leader redirect, on
        a new stream, until `retry_deadline` passes without an answer; any other error
        fails them."""
        loop = asyncio.get_running_loop()
        attempt = 0
        deadline: float | None = None
        while self._ts_waiting and not self._closed:
            try:
                await self._ts_stream_session()
                err: grpc.aio.AioRpcError = grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details="the zero ended the timestamp stream")
            except grpc.aio.AioRpcError as e:
                err = e
            except Exception as e:  # noqa: BLE001 - not an RPC outcome (a closed channel): the waiters get it
                self._ts_fail(e)
                return
            if self._ts_answered:
                self._ts_answered, attempt, deadline = False, 0, None
            code = err.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self._ts_use_stream = False  # an older zero: unary Timestamps from now on
                self._ts_pump()
                return
            now = loop.time()
            if deadline is None:
                deadline = now + self.retry_deadline
            if (code not in RETRYABLE and code != grpc.StatusCode.DEADLINE_EXCEEDED) or self._closed \
                    or now >= deadline:
                self._ts_fail(err)
                attempt, deadline = 0, None
                continue
            if not self._ts_waiting:
                return  # nobody waits: the next caller opens a new stream
            self._redirect(err)
            await self._backoff(attempt)
            attempt += 1

    async def _ts_stream_session(self) -> None:
        """One TimestampStream, until it fails (raises AioRpcError) or the zero ends it.
        Requests outstanding when it ends go back, in order, to the front of the queue."""
        loop = asyncio.get_running_loop()
        waiting, wake = self._ts_waiting, self._ts_wake
        pipeline = max(1, self.ts_pipeline)
        sent: deque[tuple[float, list[asyncio.Future[int]]]] = deque()
        live = True  # an ended session's request generator may still wake: it must take nobody

        async def requests() -> AsyncIterator[zero_pb2.TimestampsRequest]:
            while live:
                if not waiting or len(sent) >= pipeline:
                    wake.clear()
                    await wake.wait()
                    continue
                batch = waiting[:MAX_COUNT]
                del waiting[:MAX_COUNT]
                sent.append((loop.time(), batch))
                yield zero_pb2.TimestampsRequest(count=len(batch))

        call = self._stub().TimestampStream(requests())
        # A zero that stops answering (paused, cut off) must not hold callers forever: the
        # oldest outstanding request gets `rpc_timeout`, as a unary RPC would.
        timed_out = False
        watchdog: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timed_out, watchdog
            if sent and loop.time() - sent[0][0] > self.rpc_timeout:
                timed_out = True
                call.cancel()
            else:
                watchdog = loop.call_later(self.rpc_timeout / 4, check)

        watchdog = loop.call_later(self.rpc_timeout / 4, check)
        try:
            async for r in call:
                _, batch = sent.popleft()
                self.timestamp_rpcs += 1
                self._ts_answered = True
                start = r.start_id
                for i, f in enumerate(batch):
                    if not f.done():
                        f.set_result(start + i)
                if waiting:
                    wake.set()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not timed_out or (task is not None and task.cancelling()):
                raise
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=f"no timestamp answer within {self.rpc_timeout}s") from None
        finally:
            live = False
            wake.set()
            if watchdog is not None:
                watchdog.cancel()
            call.cancel()
            waiting[:0] = [f for _, b in sent for f in b if not f.done()]
            sent.clear()

    def _ts_pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._ts_waiting and len(self._ts_tasks) < self.ts_pipeline and not self._closed:
            batch = self._ts_waiting[:MAX_COUNT]
            del self._ts_waiting[:MAX_COUNT]
            t = loop.create_task(self._ts_rpc(batch))
            self._ts_tasks.add(t)
            t.add_done_callback(self._ts_done)

    def _ts_done(self, t: asyncio.Task[None]) -> None:
        self._ts_tasks.discard(t)
        if not self._closed:
            self._ts_pump()

    async def _ts_rpc(self, batch: list[asyncio.Future[int]]) -> None:
        try:
            start, _ = await self.timestamps(len(batch))
            self.timestamp_rpcs += 1
        except Exception as e:  # noqa: BLE001 - every waiter gets the error
            for f in batch:
                if not f.done():
                    f.set_exception(e)
            return
        for i, f in enumerate(batch):
            if not f.done():
                f.set_result(start + i)

    # -- UIDs from a local block ------------------------------------------------------------------
    async def uid(self) -> int:
        """A unique id from a block leased from zero (blocks of `uid_block`)."""
        if self._uid_next > self._uid_end:
            async with self._uid_lock:
                if self._uid_next > self._uid_end:
                    self._uid_next, self._uid_end = await self.assign_ids(zero_pb2.UID, self._uid_block)
        u = self._uid_next
        self._uid_next += 1
        return u

    # -- watching the membership --------------------------------------------------------------------
    def start_watch(self, on_change: Callable[[MembershipView], None] | None = None) -> None:
        """Follow StreamMembership in the background (resuming across failures)."""
        if on_change is not None:
            self._watchers.append(on_change)
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_loop())

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until the view holds a complete state."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def group_for(self, tablet: str) -> int:
        return self.view.group_for(tablet)

    async def _watch_loop(self) -> None:
        attempt = 0
        while not self._closed:
            stub = self._stub()
            req = zero_pb2.StreamMembershipRequest(since_version=self.view.version, cluster_id=self.view.cluster_id)
            try:
                async for u in stub.StreamMembership(req):
                    attempt = 0
                    if self.view.feed(u):
                        self._synced.set()
                        for cb in self._watchers:
                            cb(self.view)
            except grpc.aio.AioRpcError as e:
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    self._redirect(e)
                else:
                    # Not retryable from here (e.g. UNIMPLEMENTED): back off longer.
                    attempt = max(attempt, 5)
            await self._backoff(attempt)
            attempt += 1
