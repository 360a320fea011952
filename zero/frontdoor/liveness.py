"""Who is alive, as the leader sees it: data nodes from their heartbeats (kept in the
leader's memory only, never written through Raft), zeros from the Raft transport.

The view is overlaid onto every MembershipState this zero hands out (GetState, /state,
the membership stream). A follower mirrors the leader's view from the leader's
StreamMembership (zero/frontdoor/mirror.py), so every answer shows the leader's
first-hand view.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from zero.pb import zero_pb2
from zero.replica.node import ZeroNode
from zero.frontdoor.forwarding import ChannelFactory
from zero.frontdoor.mirror import LeaderMirror, LeaderView

__all__ = ["Liveness", "LIVENESS_WINDOW"]

LIVENESS_WINDOW = 10.0  # seconds without a heartbeat after which a member is unhealthy


class Liveness:
    """Who is alive, as the leader sees it, overlaid onto every MembershipState this zero
    hands out.

    - Data nodes: when each was last heard from (heartbeats), kept in the leader's memory
      only (never written through Raft). Measured with the monotonic clock;
      `last_heartbeat_ms` reports wall-clock time for people. Cleared on every leadership
      change (`on_leadership`): a new leader learns liveness afresh.
    - Zeros: on the leader, first-hand from the Raft transport and Raft's progress
      (Membership.is_live: heard from within an election timeout, its stream not down);
      `last_heartbeat_ms` is when the leader last admitted a batch from it.
    - On a follower, both are the leader's: the follower mirrors them from the leader's
      StreamMembership (a full state, then the deltas, in which liveness changes travel),
      so its /state shows what the leader sees. Until the mirror of the current leader is
      complete (just after a leader change), a follower reports itself healthy, the leader
      healthy when it heard from it within an election timeout, and everyone else as the
      previous mirror last said (unhealthy when nothing is known).

    zero/app.py registers `on_leadership` with the node, sets `on_flags_changed` and
    starts the mirror (`start_mirror`); `channel_factory` dials the leader with TLS.
    """

    def __init__(self, node: ZeroNode, *, window: float = LIVENESS_WINDOW,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 channel_factory: ChannelFactory | None = None) -> None:
        self.node = node
        self.window = window
        self._clock = clock
        self._wall = wall
        self._seen: dict[int, tuple[float, int, bool]] = {}  # member -> (monotonic, wall ms, leads its group)
        self._active: dict[int, int] = {}  # member -> the min_active_ts of its last heartbeat (0: none)
        self._published: dict[int, tuple[bool, bool]] = {}
        self._published_zeros: dict[int, tuple[bool, bool]] = {}
        # Called when liveness flags change, with the members concerned when they are known
        # (a heartbeat: that member; a zero's health: none), None when anyone's may have (a
        # leadership change, the leader's view arriving on a follower).
        self.on_flags_changed: Callable[[frozenset[int] | None], None] = lambda members: None
        self._since = clock()  # when liveness was last cleared (a leadership change)
        self._mirror = LeaderMirror(node, self._flags_changed, channel_factory=channel_factory)
        self._mirror_task: asyncio.Task[None] | None = None

    def start_mirror(self) -> asyncio.Task[None]:
        """Start following the leader's view (on a follower); the task ends when the node
        stops. Called once, on the running event loop."""
        if self._mirror_task is None:
            self._mirror_task = asyncio.get_running_loop().create_task(self._mirror.run(),
                                                                       name="zero-liveness-mirror")
        return self._mirror_task

    def renew_channels(self) -> None:
        """Reloaded certificates: the mirror dials the leader anew (zero/security/outbound.py)."""
        self._mirror.renew()

    def _flags_changed(self) -> None:
        self.on_flags_changed(None)

    def on_leadership(self, leader: bool, term: int) -> None:
        """A leadership change (ZeroNode.on_leadership): liveness is learned afresh."""
        self._seen.clear()
        self._active.clear()
        self._published_zeros = {}
        self._since = self._clock()
        self.on_flags_changed(None)

    @property
    def settled(self) -> bool:
        """Whether a whole liveness window has passed since liveness was last cleared:
        before that, a member not heard from yet may well be alive."""
        return self._clock() - self._since > self.window

    def beat(self, member_id: int, *, leader: bool = False, min_active_ts: int = 0) -> None:
        now = self._clock()
        if min_active_ts:
            self._active[member_id] = min_active_ts
        else:
            self._active.pop(member_id, None)
        prev = self._seen.get(member_id)
        self._seen[member_id] = (now, int(self._wall() * 1000), leader)
        if prev is None or now - prev[0] > self.window or prev[2] != leader:
            # Its healthy/leader flags change: cached renderings of the state are stale.
            self.on_flags_changed(frozenset((member_id,)))

    def forget(self, member_id: int) -> None:
        self._seen.pop(member_id, None)
        self._active.pop(member_id, None)

    def min_active_ts(self) -> int | None:
        """The lowest min_active_ts that a live data node reported in its last heartbeat,
        or None when no live data node reports one: the oracle's safe_ts bound."""
        now = self._clock()
        low: int | None = None
        for mid, ts in self._active.items():
            seen = self._seen.get(mid)
            if seen is not None and now - seen[0] <= self.window and (low is None or ts < low):
                low = ts
        return low

    def unhealthy(self) -> int:
        """How many data-node members are not healthy right now."""
        now = self._clock()
        n = 0
        for mid in self.node.state.member_ids():
            seen = self._seen.get(mid)
            if seen is None or now - seen[0] > self.window:
                n += 1
        return n

    def changed(self) -> list[int]:
        """Members whose (healthy, leader) flags changed since the last call: what
        StreamMembership must publish (liveness travels on the stream). Called
        periodically on the leader; a change of a zero's flags is announced through
        `on_flags_changed` (the hub publishes the zeros that changed)."""
        out = []
        published = self._published
        now = self._clock()
        current: dict[int, tuple[bool, bool]] = {}
        for mid in self.node.state.member_ids():
            seen = self._seen.get(mid)
            healthy = seen is not None and now - seen[0] <= self.window
            flags = (healthy, healthy and seen is not None and seen[2])
            current[mid] = flags
            if published.get(mid, (False, False)) != flags:
                out.append(mid)
        self._published = current
        lead = self.node.leader_id
        zeros = {zid: (healthy, zid == lead) for zid, (healthy, _) in self.zero_health().items()}
        if zeros != self._published_zeros:
            self._published_zeros = zeros
            self.on_flags_changed(frozenset())
        return out

    def fill(self, m: zero_pb2.Member) -> None:
        view = self._mirror.view
        if view is not None and not self.node.is_leader:
            # A follower: the leader's view (while the mirror of a new leader is not
            # complete yet, the previous one's).
            healthy, hb_ms, leads = view.members.get(m.id, (False, 0, False))
            m.healthy, m.last_heartbeat_ms, m.leader = healthy, hb_ms, leads
            return
        seen = self._seen.get(m.id)
        if seen is None:
            m.healthy, m.last_heartbeat_ms, m.leader = False, 0, False
            return
        mono, wall_ms, leads = seen
        m.healthy = self._clock() - mono <= self.window
        m.last_heartbeat_ms = wall_ms
        m.leader = leads and m.healthy

    def zero_health(self) -> dict[int, tuple[bool, int]]:
        """Every zero's (healthy, last heard from, wall ms) as the leader sees it: first-hand
        on the leader, mirrored on a follower (see the class doc)."""
        node = self.node
        zeros = node.state.zeros
        if not zeros:
            return {}
        me, lead = node.raft_id, node.leader_id
        now_ms = int(self._wall() * 1000)
        out: dict[int, tuple[bool, int]] = {}
        if node.is_leader:
            try:
                progress = node.raft_status().progress or {}
            except Exception:  # raft not running (starting or stopping)
                progress = {}
            heard = node.transport.last_heard
            mono = time.monotonic()
            for zid in zeros:
                if zid == me:
                    out[zid] = (True, now_ms)
                    continue
                t = heard.get(zid)
                out[zid] = (node.membership.is_live(zid, progress),
                            now_ms - int((mono - t) * 1000) if t is not None else 0)
            return out
        view = self._mirror.current()
        if view is not None:
            return {zid: view.zeros.get(zid, (False, 0)) for zid in zeros}
        # No complete mirror of the current leader yet: what this zero knows itself.
        previous: LeaderView | None = self._mirror.view
        last = previous.zeros if previous is not None else {}
        timeout = node.opts.election_timeout
        for zid in zeros:
            if zid == me:
                out[zid] = (True, now_ms)
            elif zid == lead and node.transport.heard_within(zid, timeout):
                t = node.transport.last_heard.get(zid)
                out[zid] = (True, now_ms - int((time.monotonic() - t) * 1000) if t is not None else now_ms)
            else:
                out[zid] = last.get(zid, (False, 0))
        return out

    def overlay(self, state: zero_pb2.MembershipState) -> zero_pb2.MembershipState:
        """Fill the liveness fields of `state` in place (and return it)."""
        for group in state.groups.values():
            for m in group.members.values():
                self.fill(m)
        if state.zeros:
            lead = self.node.leader_id
            health = self.zero_health()
            for zid, z in state.zeros.items():
                z.leader = zid == lead
                z.healthy, z.last_heartbeat_ms = health.get(zid, (False, 0))
        return state
