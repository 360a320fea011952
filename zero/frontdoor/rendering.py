"""The whole membership state as bytes, kept a group at a time.

Every GetState answer and every Connect answer carries the whole state with liveness
(SPEC), so rendering it anew for each version made N Connects cost O(N²): 10,000 data
nodes starting in turn spent most of each Connect serializing groups nobody changed.

A serialized MembershipState is the concatenation of the serialized header (every
field but `groups`) and of one serialized MembershipState per group: a protobuf parser
merges concatenated messages, and each group is one map entry. So each group's bytes are
kept, and after an applied change only the groups it touched are rendered again:

- a member or tablet named by a Delta dirties its current group;
- a removal, or a tablet that changed hands (a Delta names a moved tablet only under its
  new group), shrinks a group it does not name: after such a Delta every group's sizes
  are compared with those rendered, once, at the next render (O(groups), no
  serialization);
- liveness dirties the groups of the members whose flags changed, or everything when
  which ones is not known (a leadership change, the leader's view arriving on a
  follower); the zeros' liveness is in the header, rendered again at every change;
- another state object (a snapshot installed) renders everything.

Pure bookkeeping over what it is handed: the state, its deltas and the overlay that
fills liveness in (zero/frontdoor/liveness.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from zero.pb import zero_pb2
from zero.state.chunks import copy_header
from zero.state.delta import Delta
from zero.state.machine import ZeroState

__all__ = ["RenderedState", "MANY_TABLETS"]

# A Delta naming more tablets than this (bulk claims) renders everything at the next
# render rather than look up each tablet's group now, on the apply path.
MANY_TABLETS = 4096
BLOCK_BITS = 7

Overlay = Callable[[zero_pb2.MembershipState], object]


class RenderedState:
    """The serialized whole state, re-rendered a group at a time."""

    def __init__(self, overlay: Overlay | None = None) -> None:
        self._overlay = overlay
        self._of: ZeroState | None = None  # the state object rendered (a restored state is another)
        # The groups' bytes in blocks of 2**BLOCK_BITS group ids, each block one bytes
        # object and where each of its groups lies in it: a changed group is spliced into
        # its block (the others are copied as they are), and the whole is the header and
        # the blocks, not thousands of parts. One copy of the groups is kept, as bytes.
        self._blocks: dict[int, bytes] = {}
        self._spans: dict[int, dict[int, tuple[int, int]]] = {}  # block -> gid -> (start, end)
        self._sizes: dict[int, tuple[int, int]] = {}  # gid -> (members, tablets) when rendered
        self._dirty: set[int] = set()
        self._everything = True  # nothing kept yet, or all of it stale
        self._compare_sizes = False  # some group may have shrunk without being named
        self._header_key: tuple[int, int] | None = None
        self._stale_header = True
        self._bytes = b""
        self.rendered_groups = 0  # groups serialized so far (for tests and benchmarks)

    # -- what changed ----------------------------------------------------------------------------
    def applied(self, state: ZeroState, delta: Delta) -> None:
        """An applied change of `state` (before the next render)."""
        if delta.empty:
            return
        self._stale_header = True
        if self._everything or state is not self._of:
            return
        if len(delta.tablets) > MANY_TABLETS:
            self._everything = True
            return
        if delta.removed_members or delta.removed_tablets or delta.tablets:
            self._compare_sizes = True  # a tablet named may have left a group it does not name
        for mid in delta.members:
            m = state.member(mid)
            if m is not None:
                self._dirty.add(m.group_id)
        for name in delta.tablets:
            gid = state.group_of(name)
            if gid:
                self._dirty.add(gid)

    def liveness_changed(self, state: ZeroState, members: Iterable[int] | None) -> None:
        """The liveness flags of `members` changed; None: of any member."""
        self._stale_header = True
        if members is None:
            self._everything = True
            return
        if self._everything or state is not self._of:
            return
        for mid in members:
            m = state.member(mid)
            if m is not None:
                self._dirty.add(m.group_id)

    def forget(self) -> None:
        """The state object was replaced: render everything next time."""
        self._of = None  # not kept alive
        self._everything = True
        self._stale_header = True

    # -- rendering -------------------------------------------------------------------------------
    def render(self, state: ZeroState) -> bytes:
        """The whole state, liveness filled in, serialized. No await inside: the state
        cannot change underneath."""
        live = state.view
        groups = live.groups
        if state is not self._of:
            self._of = state
            self._everything = True
        if self._everything:
            self._blocks.clear()
            self._spans.clear()
            self._sizes.clear()
            self._dirty = set(groups.keys())
            self._everything = False
            self._compare_sizes = False
        elif self._compare_sizes:
            sizes = self._sizes
            for gid, g in groups.items():
                if sizes.get(gid) != (len(g.members), len(g.tablets)):
                    self._dirty.add(gid)
            if len(sizes) != len(groups):
                self._dirty.update(gid for gid in sizes if gid not in groups)
            self._compare_sizes = False
        stale: dict[int, dict[int, bytes | None]] = {}  # block -> gid -> new bytes (None: gone)
        for gid in self._dirty:
            if gid in groups:
                g = groups[gid]
                one = zero_pb2.MembershipState()
                one.groups[gid].CopyFrom(g)
                stale.setdefault(gid >> BLOCK_BITS, {})[gid] = self._serialized(one)
                self._sizes[gid] = (len(g.members), len(g.tablets))
                self.rendered_groups += 1
            elif gid in self._sizes:
                del self._sizes[gid]
                stale.setdefault(gid >> BLOCK_BITS, {})[gid] = None
        self._dirty.clear()
        for block, new in stale.items():
            self._splice(block, new)
        key = (live.version, id(state))
        if stale or self._stale_header or key != self._header_key:
            head = zero_pb2.MembershipState()
            copy_header(head, live)
            self._bytes = b"".join([self._serialized(head), *self._blocks.values()])
            self._header_key = key
            self._stale_header = False
        return self._bytes

    def _splice(self, block: int, new: dict[int, bytes | None]) -> None:
        """Block `block` again: its groups in `new` replaced (None: removed) or added."""
        old = memoryview(self._blocks.get(block, b""))
        spans = self._spans.get(block, {})
        parts: list[bytes | memoryview] = []
        out: dict[int, tuple[int, int]] = {}
        at = 0
        for gid, (start, end) in spans.items():
            data: bytes | memoryview | None = new.pop(gid) if gid in new else old[start:end]
            if data is not None:
                parts.append(data)
                out[gid] = (at, at + len(data))
                at += len(data)
        for gid, fresh in new.items():  # groups new to the block
            if fresh is not None:
                parts.append(fresh)
                out[gid] = (at, at + len(fresh))
                at += len(fresh)
        if out:
            self._blocks[block] = b"".join(parts)
            self._spans[block] = out
        else:
            self._blocks.pop(block, None)
            self._spans.pop(block, None)

    def _serialized(self, part: zero_pb2.MembershipState) -> bytes:
        if self._overlay is not None:
            self._overlay(part)
        return part.SerializeToString()
