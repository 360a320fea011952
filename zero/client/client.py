"""ZeroClient: the Zero service as a data node calls it, over a Router (leader discovery
and retries), with merged timestamps, a locally leased UID block and a watched
membership view."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from zero.client.commits import CommitBatcher, OracleWatcher, commit_request
from zero.client.router import Router
from zero.client.timestamps import TimestampBatcher
from zero.client.view import MembershipView
from zero.client.watch import MembershipWatcher
from zero.pb import zero_pb2

__all__ = ["ZeroClient"]


class ZeroClient:
    def __init__(self, addrs: Sequence[str] | str, *, credentials: grpc.ChannelCredentials | None = None,
                 admin_token: str | None = None, rpc_timeout: float = 5.0, retry_deadline: float = 15.0,
                 uid_block: int = 10_000, ts_pipeline: int = 2, rng: random.Random | None = None) -> None:
        if isinstance(addrs, str):
            addrs = [a for a in addrs.split(",") if a]
        self._router = Router(addrs, credentials=credentials, admin_token=admin_token, rpc_timeout=rpc_timeout,
                              retry_deadline=retry_deadline, rng=rng or random.Random())
        self._timestamps = TimestampBatcher(self._router, pipeline=ts_pipeline)
        self._watcher = MembershipWatcher(self._router)
        self._commits = CommitBatcher(self._router)
        self._oracle = OracleWatcher(self._router)
        # UID blocks.
        self._uid_block = uid_block
        self._uid_next = 0
        self._uid_end = -1
        self._uid_lock = asyncio.Lock()

    # -- settings and counters, as attributes ---------------------------------------------------------
    @property
    def rpc_timeout(self) -> float:
        """Seconds one RPC (or one timestamp request on the stream) may take."""
        return self._router.rpc_timeout

    @rpc_timeout.setter
    def rpc_timeout(self, seconds: float) -> None:
        self._router.rpc_timeout = seconds

    @property
    def retry_deadline(self) -> float:
        """Seconds a call keeps retrying UNAVAILABLE before the error is the caller's."""
        return self._router.retry_deadline

    @retry_deadline.setter
    def retry_deadline(self, seconds: float) -> None:
        self._router.retry_deadline = seconds

    @property
    def ts_pipeline(self) -> int:
        """Timestamp requests outstanding at most."""
        return self._timestamps.pipeline

    @ts_pipeline.setter
    def ts_pipeline(self, n: int) -> None:
        self._timestamps.pipeline = n

    @property
    def timestamp_rpcs(self) -> int:
        """Timestamp requests answered (stream messages or unary RPCs)."""
        return self._timestamps.rpcs

    @property
    def timestamps_over_stream(self) -> bool:
        """True while timestamps go over the TimestampStream; False once a zero answered
        it UNIMPLEMENTED (an older release: unary Timestamps RPCs from then on)."""
        return self._timestamps.over_stream

    @property
    def view(self) -> MembershipView:
        """The membership as StreamMembership last told it (start_watch keeps it current)."""
        return self._watcher.view

    # -- lifetime -----------------------------------------------------------------------------------
    async def __aenter__(self) -> "ZeroClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._router.closed = True  # retry loops stop; then the tasks, then the channels
        await self._watcher.close()
        await self._oracle.close()
        await self._commits.close()
        await self._timestamps.close()
        await self._router.close()

    async def call(self, method: str, request: Message, *, admin: bool = False, timeout: float | None = None) -> Any:
        """A unary RPC with leader discovery and retries of UNAVAILABLE until the
        retry deadline; other errors are raised as grpc.aio.AioRpcError."""
        return await self._router.call(method, request, admin=admin, timeout=timeout)

    # -- the Zero service -------------------------------------------------------------------------
    async def connect(self, addr: str, *, group_id: int = 0, learner: bool = False,
                      member_id: int = 0, labels: dict[str, str] | None = None) -> zero_pb2.ConnectResponse:
        r: zero_pb2.ConnectResponse = await self.call(
            "Connect", zero_pb2.ConnectRequest(id=member_id, addr=addr, group_id=group_id, learner=learner,
                                               labels=labels or {}))
        return r

    async def heartbeat(self, member_id: int, group_id: int, *, leader: bool = False,
                        min_active_ts: int = 0) -> None:
        """`min_active_ts`: the oldest start_ts this data node may still commit (0: none);
        the oracle's safe_ts never passes it while the node is live."""
        await self.call("Heartbeat", zero_pb2.HeartbeatRequest(member_id=member_id, group_id=group_id,
                                                               leader=leader, min_active_ts=min_active_ts))

    async def should_serve(self, predicate: str, group_id: int = 0) -> zero_pb2.Tablet:
        r: zero_pb2.Tablet = await self.call("ShouldServe", zero_pb2.Tablet(predicate=predicate, group_id=group_id))
        return r

    async def tablets(self, predicates: Sequence[str], group_id: int = 0) -> list[zero_pb2.Tablet]:
        r: zero_pb2.TabletsResponse = await self.call("Tablets", zero_pb2.TabletsRequest(
            tablets=[zero_pb2.Tablet(predicate=p, group_id=group_id) for p in predicates]))
        return list(r.tablets)

    async def update_tablet_sizes(self, group_id: int, sizes: dict[str, int]) -> None:
        await self.call("UpdateTabletSizes", zero_pb2.TabletSizes(group_id=group_id, sizes=sizes))

    async def get_state(self) -> zero_pb2.MembershipState:
        r: zero_pb2.MembershipState = await self.call("GetState", zero_pb2.GetStateRequest())
        return r

    async def assign_ids(self, kind: zero_pb2.IdKind, count: int) -> tuple[int, int]:
        r: zero_pb2.AssignedIds = await self.call("AssignIds", zero_pb2.AssignIdsRequest(kind=kind, count=count))
        return r.start_id, r.end_id

    async def timestamps(self, count: int) -> tuple[int, int]:
        r: zero_pb2.AssignedIds = await self.call("Timestamps", zero_pb2.TimestampsRequest(count=count))
        return r.start_id, r.end_id

    async def timestamp(self) -> int:
        """One timestamp, strictly larger than any timestamp handed out before this call
        began; concurrent callers share requests (zero.client.timestamps says how)."""
        return await self._timestamps.timestamp()

    # -- transactions (the oracle) ------------------------------------------------------------------
    async def commit(self, start_ts: int, keys: Sequence[int] = (), writes: Sequence[tuple[str, int]] = (),
                     ) -> zero_pb2.CommitResponse:
        """Commit or abort the transaction that started at `start_ts`: `keys` are the
        64-bit conflict keys of what it wrote, `writes` the (tablet, group) pairs it wrote
        to. Returns the decision (commit_ts, or aborted with a reason); the same one on
        every call for this start_ts. Concurrent callers share CommitBatches on one
        CommitStream (zero.client.commits). CommitRefused when zero decided nothing."""
        return await self._commits.commit(commit_request(start_ts, keys, writes))

    async def abort(self, start_ts: int) -> zero_pb2.CommitResponse:
        """Give up the transaction (CLIENT_ABORT) unless it was decided already."""
        return await self._commits.commit(commit_request(start_ts, (), (), abort=True))

    async def txn_status(self, start_ts: Sequence[int]) -> list[zero_pb2.CommitResponse]:
        """The decisions of these transactions; deciding nothing (undecided: commit_ts 0)."""
        r: zero_pb2.TryAbortResponse = await self.call("TxnStatus", zero_pb2.TryAbortRequest(start_ts=start_ts))
        return list(r.txns)

    async def try_abort(self, start_ts: Sequence[int]) -> list[zero_pb2.CommitResponse]:
        """Abort whatever of these is not decided yet; the decided keep their decision."""
        r: zero_pb2.TryAbortResponse = await self.call("TryAbort", zero_pb2.TryAbortRequest(start_ts=start_ts))
        return list(r.txns)

    async def read_timestamp(self) -> int:
        """A read-only snapshot timestamp (the oracle's max_assigned): every commit at or
        below it is known, and nothing is leased for it."""
        r: zero_pb2.AssignedIds = await self.call("Timestamps", zero_pb2.TimestampsRequest(read_only=True))
        return r.end_id

    @property
    def oracle(self) -> OracleWatcher:
        """The Oracle stream (started by wait_for_ts or watch_oracle): max_assigned,
        safe_ts, and `listeners` called with every delta."""
        return self._oracle

    def watch_oracle(self, since_ts: int = 0) -> None:
        """Follow the Oracle stream in the background from `since_ts`, resuming across
        failures from the last max_assigned seen."""
        self._oracle.start(since_ts)

    async def wait_for_ts(self, read_ts: int, timeout: float | None = None) -> None:
        """Wait until every commit at or below `read_ts` is known (max_assigned >= read_ts):
        then a read at `read_ts` sees a complete snapshot."""
        await self._oracle.wait_for(read_ts, timeout)

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
        self._watcher.start(on_change)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until the view holds a complete state."""
        await self._watcher.wait_synced(timeout)

    def group_for(self, tablet: str) -> int:
        return self.view.group_for(tablet)
