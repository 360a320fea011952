"""The reference data node's transactional RPCs: TxnGet, Prewrite, and Put as a
transaction of one write (zero/datanode/transactions.py holds the state they use).

Who may serve what (the same rules as Put/Get, zero/datanode/server.py):
- a write (Prewrite, Put) goes through when the tablet is owned by this group, is not
  read-only and is not fenced here; an unowned tablet is claimed on first write. No
  await separates that check from counting the write in flight, so a move's fence set
  afterwards waits for it, and the move settles it before copying (moves.py);
- a read (TxnGet) is served for tablets this group owns, after the watermark wait.
  While a tablet is fenced here or read-only in the watched map its move may have
  committed unseen, so a linearizable read of zero's state confirms the owner first.
  The checks are repeated after the last await, with the read in the same step: a
  tablet dropped meanwhile (its move committed) is refused, never read empty.

Put keeps its answers: done, or FAILED_PRECONDITION naming the owner (moved, served
elsewhere, read-only while moving), UNAVAILABLE when its outcome is unknown. Two Puts
of one key no longer race at the node: each is a transaction, and the one that loses
the conflict is retried with a new start_ts (a blind write), so the later one wins.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from zero.client import ZeroClient
from zero.datanode.moves import TabletMoves
from zero.datanode.store import TabletStore
from zero.datanode.transactions import AbortedError, Transactions
from zero.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from zero.pb import datanode_pb2, zero_pb2
from zero.state import validate

__all__ = ["TxnHost", "TxnService", "MAX_KEYS"]

MAX_KEYS = 100_000  # keys per TxnGet, writes per Prewrite


class TxnHost(Protocol):
    """What the transactional RPCs read of their data node (server.DataNode)."""

    @property
    def group(self) -> int: ...

    @property
    def zc(self) -> ZeroClient: ...

    def watched(self, name: str) -> zero_pb2.Tablet | None: ...
    async def tablet_owner(self, name: str, *, claim: bool) -> zero_pb2.Tablet: ...
    def refuse_unless_ours(self, name: str, t: zero_pb2.Tablet, *, write: bool) -> None: ...


class TxnService:
    def __init__(self, host: TxnHost, store: TabletStore, moves: TabletMoves, txns: Transactions, *,
                 read_wait: float) -> None:
        self._host = host
        self._store = store
        self._moves = moves
        self._txns = txns
        self.read_wait = read_wait  # how long a read waits for the watermark (then UNAVAILABLE)

    async def _ready(self) -> None:
        if self._txns.ready.is_set():
            return
        try:
            async with asyncio.timeout(self.read_wait):
                await self._txns.ready.wait()
        except TimeoutError:
            raise UnavailableError("this data node has not joined the oracle's stream yet; retry") from None

    # -- TxnGet ------------------------------------------------------------------------------------
    async def txn_get(self, req: datanode_pb2.TxnGetRequest) -> datanode_pb2.TxnGetResponse:
        read_ts = req.read_ts
        if not read_ts:
            raise InvalidArgumentError("read_ts 0 is not a timestamp zero hands out")
        if len(req.keys) > MAX_KEYS:
            raise InvalidArgumentError(f"{len(req.keys)} keys in one read; at most {MAX_KEYS:,}")
        names = sorted({validate.tablet_name(k.tablet) for k in req.keys})
        await self._ready()
        host, store, txns = self._host, self._store, self._txns
        txns.check_read_ts(read_ts)
        txns.note_read(read_ts)
        owners = {n: await host.tablet_owner(n, claim=False) for n in names}
        served = [n for n in names if owners[n].group_id]  # unowned: no commit can have written it
        for n in served:
            host.refuse_unless_ours(n, owners[n], write=False)
        try:
            await host.zc.wait_for_ts(read_ts, timeout=self.read_wait)
        except TimeoutError:
            raise UnavailableError(f"every commit up to read_ts {read_ts} is not known here yet (the oracle's "
                                   f"watermark is at {host.zc.oracle.max_assigned}); retry") from None
        dropped = {n: store.move_ids(n).dropped for n in served}
        moving = [n for n in served if n in self._moves.fences or (owners[n].read_only)
                  or ((w := host.watched(n)) is not None and w.read_only)]
        if moving:
            await self._confirm(moving)
        # No await from here on: the checks and the read see one state.
        txns.check_read_ts(read_ts)
        for n in served:
            host.refuse_unless_ours(n, host.watched(n) or owners[n], write=False)
            if store.move_ids(n).dropped != dropped[n]:
                raise FailedPreconditionError(f"tablet {n!r} moved away from group {host.group} while the read "
                                              f"waited; ask zero for its owner")
        out = datanode_pb2.TxnGetResponse()
        ours = set(served)
        for k in req.keys:
            v = store.get_version(k.tablet, k.key, read_ts) if k.tablet in ours else None
            out.values.append(datanode_pb2.TxnValue(found=True, value=v[1], commit_ts=v[0]) if v is not None
                              else datanode_pb2.TxnValue(found=False))
        return out

    async def _confirm(self, names: list[str]) -> None:
        """Refuse the tablets whose move committed (zero's state, read linearizably)."""
        st = await self._host.zc.get_state()
        group = self._host.group
        for n in names:
            owner = next((gid for gid, g in st.groups.items() if n in g.tablets), 0)
            if owner != group:
                who = f"moved to group {owner}" if owner else "is served by no group"
                raise FailedPreconditionError(f"tablet {n!r} {who}; send requests there")

    # -- Prewrite ------------------------------------------------------------------------------------
    async def prewrite(self, req: datanode_pb2.PrewriteRequest) -> datanode_pb2.PrewriteResponse:
        if not req.start_ts:
            raise InvalidArgumentError("start_ts 0 is not a timestamp zero hands out")
        if not req.writes:
            raise InvalidArgumentError("a prewrite needs at least one write")
        if len(req.writes) > MAX_KEYS:
            raise InvalidArgumentError(f"{len(req.writes)} writes in one prewrite; at most {MAX_KEYS:,}")
        writes = [(validate.tablet_name(m.tablet), m.key, m.value) for m in req.writes]
        await self._ready()
        host = self._host
        names = sorted({t for t, _, _ in writes})
        owners = {n: await host.tablet_owner(n, claim=True) for n in names}
        # No await between these checks and counting the writes as in flight.
        for n in names:
            host.refuse_unless_ours(n, owners[n], write=True)
        for n in names:
            self._moves.begin_write(n)
        try:
            await self._txns.prewrite(req.start_ts, writes)
        finally:
            for n in names:
                await self._moves.end_write(n)
        return datanode_pb2.PrewriteResponse(group_id=host.group)

    # -- Put ------------------------------------------------------------------------------------------
    async def put(self, name: str, key: bytes, value: bytes) -> None:
        await self._ready()
        host = self._host
        t = await host.tablet_owner(name, claim=True)
        host.refuse_unless_ours(name, t, write=True)  # no await before begin_write (as Prewrite)
        self._moves.begin_write(name)
        try:
            d = await self._txns.autocommit(name, key, value, host.group)
        finally:
            await self._moves.end_write(name)
        if not d.aborted:
            return
        if d.reason == zero_pb2.TABLET_MOVING:
            raise FailedPreconditionError(f"tablet {name!r} is read-only while it is being moved; its owner is "
                                          f"group {host.group}; retry later")
        if d.reason == zero_pb2.WRONG_GROUP:
            owner = (await host.tablet_owner(name, claim=False)).group_id
            who = f"group {owner}" if owner else "no group"
            raise FailedPreconditionError(f"tablet {name!r} is served by {who}, not by group {host.group}")
        raise AbortedError(f"the write was aborted ({zero_pb2.AbortReason.Name(d.reason)}): {d.message}")
