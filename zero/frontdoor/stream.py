"""StreamMembership: the shard map as a stream (SPEC: gRPC section).

A watcher first gets the whole state, read linearizably and split into messages of at
most 1 MiB (`full`, applied by the client at `last_chunk`), then one delta per applied
batch: the changed members and tablets (current values, inside `state.groups[g]`),
changed zeros, and removals. A watcher resuming from `since_version` of the same
cluster gets only what changed since, when the in-memory history reaches back that
far; otherwise the full state again.

The apply loop never waits for a watcher: each has a bounded queue, and a watcher that
falls behind is dropped (its stream ends with RESOURCE_EXHAUSTED; the client resumes
from the last version it saw). Full-state reads are admitted a few at a time, so the
watchers that reconnect together after a leader change do not all build the full state
at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Literal, overload

from zero.errors import ResourceExhaustedError
from zero.replica.node import ZeroNode
from zero.pb import zero_pb2
from zero.frontdoor.rendering import RenderedState
from zero.state.chunks import LIVENESS_SLACK, copy_scalars, iter_full_state_chunks
from zero.state.machine import Applied, Delta

__all__ = ["MembershipHub"]

QUEUE_LIMIT = 1024     # updates a watcher may fall behind before it is dropped
FULL_READS_AT_ONCE = 16

_RESYNC = object()  # queue marker: the state was replaced (snapshot install); send it all


class _Msg:
    """An update shared by every watcher it goes to, serialized at most once. A chunk
    of the full state keeps only its bytes (the message is parsed again for the rare
    caller that wants objects): 500 watchers of a 100,000-tablet state share ~6 MB of
    bytes, not another copy of the state as messages."""

    __slots__ = ("_obj", "_data", "version")

    def __init__(self, obj: zero_pb2.MembershipUpdate | None = None, data: bytes | None = None,
                 version: int = 0) -> None:
        self._obj = obj
        self._data = data
        self.version = obj.version if obj is not None else version

    @classmethod
    def serialized(cls, obj: zero_pb2.MembershipUpdate) -> _Msg:
        return cls(data=obj.SerializeToString(), version=obj.version)

    @property
    def obj(self) -> zero_pb2.MembershipUpdate:
        if self._obj is None:
            assert self._data is not None
            return zero_pb2.MembershipUpdate.FromString(self._data)
        return self._obj

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.obj.SerializeToString()
        return self._data


class _Watcher:
    __slots__ = ("queue", "dropped")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.dropped = False


class MembershipHub:
    """Fans applied changes out to StreamMembership watchers on this zero.

    zero/app.py registers `on_applied` and `on_state_reset` with the node."""

    def __init__(self, node: ZeroNode, *, overlay: Callable[[zero_pb2.MembershipState], object] | None = None,
                 queue_limit: int = QUEUE_LIMIT, full_reads_at_once: int = FULL_READS_AT_ONCE) -> None:
        self.node = node
        # Fills liveness fields (healthy, last_heartbeat_ms) of members in place.
        self._overlay = overlay
        self._watchers: set[_Watcher] = set()
        self._queue_limit = queue_limit
        self._admit = asyncio.Semaphore(full_reads_at_once)
        # The full state as last chunked, shared by all watchers that start (or resync)
        # at the same version and liveness epoch: 500 watchers of a 100,000-tablet
        # state must not hold 500 copies.
        self._full_key: tuple[int, int, int] | None = None
        self._full_msgs: list[_Msg] = []
        self._epoch = 0  # bumped when liveness changes (the overlay's output)
        self._zeros_sent: dict[int, tuple[bool, bool]] = {}  # zero -> (healthy, leader) last sent by bump()
        # GetState's and Connect's whole state, kept a group at a time (zero/frontdoor/rendering.py).
        self.rendered = RenderedState(overlay)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    # -- producing updates (on the apply path: never blocks) -------------------------------------
    def on_applied(self, batch: list[Applied]) -> None:
        """An applied batch (ZeroNode.on_applied): its changes go to every watcher."""
        st = self.node.state
        for a in batch:
            self.rendered.applied(st, a.delta)
        if not self._watchers:
            return
        delta = Delta()
        for a in batch:
            delta = delta.merge(a.delta)
        if delta.empty:
            return
        self._publish(_Msg(self.delta_update(delta)))

    def on_state_reset(self) -> None:
        """The state was replaced (ZeroNode.on_state_reset, a snapshot installed): every
        watcher gets the whole state again."""
        self.rendered.forget()
        self._publish(_RESYNC)

    def notify_members(self, member_ids: Iterable[int]) -> None:
        """Liveness of these members changed: send their current values, at the
        current version (SPEC: liveness travels on the stream)."""
        ids = frozenset(member_ids)
        if ids:
            self._epoch += 1
            self.rendered.liveness_changed(self.node.state, ids)
            if self._watchers:
                self._publish(_Msg(self.delta_update(Delta(members=ids))))

    def _publish(self, item: object) -> None:
        for w in list(self._watchers):
            if w.queue.qsize() >= self._queue_limit:
                # The slow consumer is dropped rather than slowing the apply loop.
                w.dropped = True
                self._watchers.discard(w)
                w.queue.put_nowait(None)
            else:
                w.queue.put_nowait(item)

    def delta_update(self, delta: Delta) -> zero_pb2.MembershipUpdate:
        """A delta message: current values of everything `delta` names."""
        st = self.node.state
        snap = st.view  # read-only view of the live state
        out = zero_pb2.MembershipUpdate(version=snap.version, cluster_id=snap.cluster_id, full=False)
        s = out.state
        copy_scalars(s, snap)
        for mid in delta.members:
            m = st.member(mid)
            if m is not None:
                if self._overlay is not None:
                    tmp = zero_pb2.MembershipState()
                    tmp.groups[m.group_id].members[mid].CopyFrom(m)
                    self._overlay(tmp)
                    m = tmp.groups[m.group_id].members[mid]
                s.groups[m.group_id].members[mid].CopyFrom(m)
        for name in delta.tablets:
            t = st.tablet(name)
            if t is not None:
                s.groups[t.group_id].tablets[name].CopyFrom(t)
        if delta.zeros:
            zs = zero_pb2.MembershipState()
            for zid in delta.zeros:
                if zid in snap.zeros:
                    zs.zeros[zid].CopyFrom(snap.zeros[zid])
            if self._overlay is not None:
                self._overlay(zs)  # the zeros' liveness, as the members'
            for zid, z in zs.zeros.items():
                s.zeros[zid].CopyFrom(z)
        out.removed_tablets.extend(sorted(delta.removed_tablets))
        out.removed_members.extend(sorted(delta.removed_members))
        out.removed_zeros.extend(sorted(delta.removed_zeros))
        return out

    # -- serving a watcher ----------------------------------------------------------------------------
    @overload
    def stream(self, since_version: int = 0, cluster_id: str = "", *,
               serialized: Literal[False] = False) -> AsyncIterator[zero_pb2.MembershipUpdate]: ...
    @overload
    def stream(self, since_version: int = 0, cluster_id: str = "", *,
               serialized: Literal[True]) -> AsyncIterator[bytes]: ...

    async def stream(self, since_version: int = 0, cluster_id: str = "", *,
                     serialized: bool = False) -> AsyncIterator[zero_pb2.MembershipUpdate | bytes]:
        """The updates for one watcher, until it goes away or falls behind
        (ResourceExhaustedError). With `serialized`, each update comes as the bytes of
        its MembershipUpdate, serialized once for all watchers (the gRPC servicer
        yields them as they are); otherwise as the shared message objects, which
        callers must not modify."""
        w = _Watcher()
        # Register before the initial read, so no change applied after it is missed;
        # a queued delta that the initial state already contains is harmless (deltas
        # carry current values).
        self._watchers.add(w)
        admitted = False
        try:
            # Admitted a few at a time until the initial state is *sent*, not just built:
            # watchers reconnecting together (after a leader change) are let in
            # gradually, and at most that many full states sit in gRPC's send buffers.
            await self._admit.acquire()
            admitted = True
            await self.node.read_barrier()
            first = self._initial(since_version, cluster_id)
            for msg in first:
                yield msg.data if serialized else msg.obj
            self._admit.release()
            admitted = False
            # Versions only grow on a stream: deltas queued before the initial read are
            # already contained in it.
            last = first[-1].version
            while True:
                item = await w.queue.get()
                if item is None:
                    raise ResourceExhaustedError(
                        "this watcher fell too far behind and was dropped; resume with since_version")
                if item is _RESYNC:
                    chunks = await self._admitted(self._full)
                    for msg in chunks:
                        yield msg.data if serialized else msg.obj
                    last = chunks[-1].version
                    continue
                assert isinstance(item, _Msg)
                if item.version < last:
                    continue
                last = item.version
                yield item.data if serialized else item.obj
        finally:
            if admitted:
                self._admit.release()
            self._watchers.discard(w)

    async def _admitted(self, read: Callable[[], list[_Msg]]) -> list[_Msg]:
        """A linearizable read of the state, a few watchers at a time."""
        async with self._admit:
            await self.node.read_barrier()
            return read()

    def _initial(self, since_version: int, cluster_id: str) -> list[_Msg]:
        st = self.node.state
        if since_version and cluster_id and cluster_id == st.cluster_id:
            delta = st.changes_since(since_version)
            if delta is not None:
                # Resumable: only what changed (possibly nothing) at the current version,
                # and every zero: their liveness is this zero's view, which a watcher
                # resuming here after a leader change has not seen yet.
                delta = delta.merge(Delta(zeros=frozenset(st.zeros)))
                return [_Msg(self.delta_update(delta))]
        return self._full()

    def bump(self, members: Iterable[int] | None = None) -> None:
        """Liveness changed (Liveness.on_flags_changed): of `members` and the zeros, or of
        anyone (None). The next full state is rendered anew, state_bytes() renders the
        groups concerned again, and the zeros whose (healthy, leader) flags changed are
        sent to the watchers, at the current version (data-node members are sent by
        notify_members)."""
        self._epoch += 1
        self.rendered.liveness_changed(self.node.state, members)
        if self._overlay is None:
            return
        zs = zero_pb2.MembershipState()
        for zid, z in self.node.state.zeros.items():
            zs.zeros[zid].CopyFrom(z)
        self._overlay(zs)
        flags = {zid: (z.healthy, z.leader) for zid, z in zs.zeros.items()}
        changed = frozenset(zid for zid, f in flags.items() if self._zeros_sent.get(zid) != f)
        self._zeros_sent = flags
        if changed and self._watchers:
            self._publish(_Msg(self.delta_update(Delta(zeros=changed))))

    def state_bytes(self) -> bytes:
        """The whole state (with liveness) serialized, shared by every GetState and
        Connect reply until something changes; after a change only the groups it touched
        are serialized again. The caller has done the read barrier."""
        return self.rendered.render(self.node.state)

    def _full(self) -> list[_Msg]:
        st = self.node.state
        key = (id(st), st.version, self._epoch)
        if key != self._full_key:
            # Chunked straight from the live state (no await here, so it cannot change
            # underneath), liveness filled in per chunk, each kept as bytes only: the
            # peak is one chunk of messages, not a copy of the whole state.
            self._full_msgs = []
            msgs = []
            overlay = self._overlay
            for u in iter_full_state_chunks(st.view, slack=LIVENESS_SLACK if overlay is not None else 0):
                if overlay is not None:
                    overlay(u.state)
                msgs.append(_Msg.serialized(u))
            self._full_msgs = msgs
            self._full_key = key
        return self._full_msgs
