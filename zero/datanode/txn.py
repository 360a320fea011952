"""Transactions over reference data nodes: the client that tests and examples use.

    zc = ZeroClient(zeros)
    zc.start_watch()                       # routes tablets to groups without a round trip
    await zc.wait_synced()
    async with TxnClient(zc) as tc:
        txn = await tc.begin()             # start_ts from zero
        alice = await txn.get("bank", b"alice")          # as of start_ts
        txn.put("bank", b"alice", b"90")                 # buffered here
        txn.put("bank", b"bob", b"110")
        d = await txn.commit()             # the oracle's decision: d.commit_ts, or d.aborted
        snap = await tc.snapshot()         # read-only, at the oracle's max_assigned
        both = await snap.get_many([("bank", b"alice"), ("bank", b"bob")])

Snapshot isolation, first committer wins (SPEC "Transactions: the oracle"): a
transaction reads the versions committed before its start_ts; its commit aborts
(CONFLICT) when a transaction that committed after its start_ts wrote a key it writes.

commit(): the writes go to the serving node of each group that serves their tablets
(Prewrite, buffered there), then zero.client's commit decides with the conflict keys
(64-bit fingerprints of tablet + key, `conflict_key`) and the (tablet, group) pairs the
nodes named. A prewrite refused (a tablet moving, served elsewhere) aborts the
transaction (CLIENT_ABORT, the refusal in `message`). A commit whose outcome is unknown
(zero unreachable past the client's retry deadline) raises: `zc.txn_status([start_ts])`
tells later. The nodes apply the decision from the Oracle stream.

Routing: a tablet's group comes from the watched shard map (an unowned tablet that is
written goes to the lowest group with a healthy member, which claims it); the serving
node of a group is its lowest-id healthy voter, as the reference node's leader rule
says. A read refused with "moved to group N" / "served by group N" is routed again
after a linearizable lookup; UNAVAILABLE (a node restarting) is retried until the
deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from zero.client import ZeroClient
from zero.pb import datanode_pb2, datanode_pb2_grpc, zero_pb2
from zero.rpc import code_of

__all__ = ["TxnClient", "Txn", "conflict_key", "RETRY_CODES"]

T = TypeVar("T")
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_NAMES_OWNER = re.compile(r"(?:moved to|served by) group (\d+)")
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


def conflict_key(tablet: str, key: bytes) -> int:
    """The 64-bit conflict key of (tablet, key) that a commit names."""
    name = tablet.encode("utf-8")
    h = hashlib.blake2b(len(name).to_bytes(4, "big") + name + key, digest_size=8)
    return int.from_bytes(h.digest(), "big")


class TxnClient:
    """Begins transactions and routes their calls to the data nodes. `zc` must watch the
    membership (start_watch); the client does not close it."""

    def __init__(self, zc: ZeroClient, *, credentials: grpc.ChannelCredentials | None = None,
                 rpc_timeout: float = 15.0, retry_deadline: float = 10.0) -> None:
        self.zc = zc
        self.rpc_timeout = rpc_timeout  # one call to a data node (a read may wait for the watermark)
        self.retry_deadline = retry_deadline  # retrying a data node that is away
        self._creds = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> TxnClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def begin(self) -> Txn:
        """A read-write transaction at a fresh start_ts."""
        return Txn(self, await self.zc.timestamp(), read_only=False)

    async def snapshot(self) -> Txn:
        """A read-only transaction at the oracle's max_assigned (no timestamp leased): it
        sees every commit at or below it."""
        return Txn(self, await self.zc.read_timestamp(), read_only=True)

    # -- routing ---------------------------------------------------------------------------------
    def group_of(self, tablet: str) -> int:
        """The group serving `tablet` in the watched map; 0: nobody."""
        return self.zc.group_for(tablet)

    def default_group(self) -> int:
        """Where an unowned tablet is written (its node claims it): the lowest group with
        a healthy member."""
        st = self.zc.view.state
        groups = sorted(g for g, grp in (st.groups.items() if st else ())
                        if any(m.healthy and not m.learner for m in grp.members.values()))
        if not groups:
            raise _status(grpc.StatusCode.UNAVAILABLE, "no group has a healthy data node")
        return groups[0]

    def addr_of(self, group: int) -> str:
        """The serving node of `group`: its lowest-id healthy voter (else its lowest id)."""
        st = self.zc.view.state
        grp = st.groups.get(group) if st is not None else None
        members = [m for m in (grp.members.values() if grp is not None else ()) if not m.learner]
        if not members:
            raise _status(grpc.StatusCode.UNAVAILABLE, f"group {group} has no data node")
        healthy = [m for m in members if m.healthy] or members
        return min(healthy, key=lambda m: m.id).addr

    def stub(self, group: int) -> datanode_pb2_grpc.DataNodeStub:
        addr = self.addr_of(group)
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = (
                grpc.aio.secure_channel(addr, self._creds, options=CHANNEL_OPTIONS) if self._creds is not None
                else grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS))
        return datanode_pb2_grpc.DataNodeStub(ch)

    async def routes(self, tablets: Sequence[str], *, lookup: bool) -> dict[str, int]:
        """Each tablet's group from the watched map; with `lookup`, from zero itself (a
        linearizable read: the map may lag a claim or a move)."""
        if lookup:
            return {t.predicate: t.group_id for t in await self.zc.tablets(sorted(set(tablets)), 0)}
        return {t: self.group_of(t) for t in tablets}

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` again while the node is away (UNAVAILABLE, deadline) until the retry
        deadline; other errors are the caller's."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.retry_deadline
        delay = 0.05
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as e:
                if code_of(e) not in RETRY_CODES or loop.time() + delay > end:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


class Txn:
    """One transaction. Not safe for concurrent use by several tasks."""

    def __init__(self, client: TxnClient, start_ts: int, *, read_only: bool) -> None:
        self.client = client
        self.start_ts = start_ts
        self.read_only = read_only
        self.writes: dict[tuple[str, bytes], bytes] = {}
        self.decision: zero_pb2.CommitResponse | None = None

    async def get(self, tablet: str, key: bytes) -> bytes | None:
        """The value as of start_ts (this transaction's own write if it made one)."""
        return (await self.get_many([(tablet, key)]))[0]

    async def get_many(self, keys: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Values as of start_ts, one call per group (concurrently)."""
        self._check_open()
        out: list[bytes | None] = [None] * len(keys)
        todo = []
        for i, (t, k) in enumerate(keys):
            if (t, k) in self.writes:
                out[i] = self.writes[(t, k)]
            else:
                todo.append(i)
        tc = self.client
        routes = await tc.routes([keys[i][0] for i in todo], lookup=False)
        if any(not g for g in routes.values()):
            routes.update(await tc.routes([t for t, g in routes.items() if not g], lookup=True))
        for _ in range(20):
            by_group: dict[int, list[int]] = {}
            for i in todo:
                g = routes[keys[i][0]]
                if g:  # nobody serves the tablet: no commit can have written it
                    by_group.setdefault(g, []).append(i)
            results = await asyncio.gather(*(self._read(g, [keys[i] for i in idx]) for g, idx in by_group.items()),
                                           return_exceptions=True)
            moved = False
            for (g, idx), res in zip(by_group.items(), results):
                if isinstance(res, grpc.aio.AioRpcError) and res.code() == grpc.StatusCode.FAILED_PRECONDITION \
                        and _NAMES_OWNER.search(res.details() or ""):
                    moved = True
                    continue
                if isinstance(res, BaseException):
                    raise res
                for i, v in zip(idx, res):
                    out[i] = v.value if v.found else None
                todo = [i for i in todo if i not in idx]
            if not moved:
                return out
            routes = await tc.routes([keys[i][0] for i in todo], lookup=True)
            await asyncio.sleep(0.05)
        raise _status(grpc.StatusCode.UNAVAILABLE, "the tablets kept moving while they were read; retry")

    async def _read(self, group: int, keys: list[tuple[str, bytes]]) -> list[datanode_pb2.TxnValue]:
        tc = self.client
        req = datanode_pb2.TxnGetRequest(read_ts=self.start_ts,
                                         keys=[datanode_pb2.TxnKey(tablet=t, key=k) for t, k in keys])

        async def call() -> datanode_pb2.TxnGetResponse:
            r: datanode_pb2.TxnGetResponse = await tc.stub(group).TxnGet(req, timeout=tc.rpc_timeout)
            return r
        return list((await tc.retrying(call)).values)

    def put(self, tablet: str, key: bytes, value: bytes) -> None:
        """Buffer a write (sent at commit)."""
        self._check_open()
        if self.read_only:
            raise RuntimeError("a snapshot is read-only")
        self.writes[(tablet, key)] = value

    async def commit(self) -> zero_pb2.CommitResponse:
        """Prewrite, then the oracle's decision (see the module doc); raises when the
        outcome is unknown."""
        self._check_open()
        tc = self.client
        if not self.writes:
            # A snapshot just ends; a read-write transaction that wrote nothing commits
            # (read-only, always) so the nodes it read from stop holding its start_ts.
            d = await tc.zc.commit(self.start_ts) if not self.read_only else zero_pb2.CommitResponse(
                start_ts=self.start_ts)
            self.decision = d
            return d
        routes = await tc.routes(sorted({t for t, _ in self.writes}), lookup=False)
        if not all(routes.values()):
            default = tc.default_group()
            routes = {t: g or default for t, g in routes.items()}
        by_group: dict[int, list[datanode_pb2.TxnMutation]] = {}
        for (t, k), v in self.writes.items():
            by_group.setdefault(routes[t], []).append(datanode_pb2.TxnMutation(tablet=t, key=k, value=v))
        results = await asyncio.gather(*(self._prewrite(g, ms) for g, ms in by_group.items()),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        if refused:
            d = await tc.zc.abort(self.start_ts)
            if d.aborted:
                why = refused[0]
                msg = f"{why.code().name}: {why.details()}" if isinstance(why, grpc.aio.AioRpcError) else repr(why)
                d.message = f"a prewrite failed: {msg}"
            self.decision = d
            return d
        named = {g: r for g, r in zip(by_group, results) if isinstance(r, int)}  # the group each node is in
        writes = sorted({(m.tablet, named[g]) for g, ms in by_group.items() for m in ms})
        keys = sorted({conflict_key(t, k) for t, k in self.writes})
        d = await tc.zc.commit(self.start_ts, keys, writes)
        self.decision = d
        return d

    async def _prewrite(self, group: int, writes: list[datanode_pb2.TxnMutation]) -> int:
        tc = self.client
        req = datanode_pb2.PrewriteRequest(start_ts=self.start_ts, writes=writes)

        async def call() -> datanode_pb2.PrewriteResponse:
            r: datanode_pb2.PrewriteResponse = await tc.stub(group).Prewrite(req, timeout=tc.rpc_timeout)
            return r
        return (await tc.retrying(call)).group_id

    async def abort(self) -> zero_pb2.CommitResponse:
        """Give up (CLIENT_ABORT), unless decided already; a snapshot just ends."""
        if self.decision is not None:
            return self.decision
        if self.read_only:
            self.decision = zero_pb2.CommitResponse(start_ts=self.start_ts, aborted=True,
                                                    reason=zero_pb2.CLIENT_ABORT)
        else:
            self.decision = await self.client.zc.abort(self.start_ts)
        return self.decision

    def _check_open(self) -> None:
        if self.decision is not None:
            raise RuntimeError(f"transaction {self.start_ts} is over")


def _status(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)
