"""How the leader reaches data nodes for a move: which members of a group to call, in
what order, and the channels to them.

Liveness is the leader's own (from heartbeats, zero/frontdoor's Liveness), seen through
the small LivenessView Protocol. A data node back from a few seconds down must be
dialled again at once, not after gRPC's own backoff (which grows to 2 minutes):
meanwhile every move from or to it would be rolled back and its tablet backed off, so
the channels use zero/rpc.py's capped reconnect options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import grpc

from zero.pb import zero_pb2
from zero.rpc import RECONNECT_OPTIONS

__all__ = ["DIAL_OPTIONS", "LivenessView", "Channels", "dial", "group_addrs"]

DIAL_OPTIONS: list[tuple[str, int]] = [("grpc.max_receive_message_length", 16 << 20), *RECONNECT_OPTIONS]


class LivenessView(Protocol):
    """What the move driver needs of data-node liveness (zero/frontdoor's Liveness)."""

    @property
    def settled(self) -> bool: ...
    def fill(self, m: zero_pb2.Member) -> None: ...


def dial(addr: str) -> grpc.aio.Channel:
    """A plaintext channel to a data node (the leader's MoveTablet and DropTablet calls)."""
    return grpc.aio.insecure_channel(addr, options=DIAL_OPTIONS)


class Channels:
    """One plaintext channel per data-node address, opened on first use."""

    def __init__(self) -> None:
        self._open: dict[str, grpc.aio.Channel] = {}

    def __call__(self, addr: str) -> grpc.aio.Channel:
        ch = self._open.get(addr)
        if ch is None:
            ch = self._open[addr] = dial(addr)
        return ch

    async def close(self) -> None:
        for ch in self._open.values():
            await ch.close()
        self._open.clear()


def group_addrs(groups: Mapping[int, zero_pb2.Group], gid: int, liveness: LivenessView, *,
                live_only: bool = True) -> list[str]:
    """Addresses of group `gid`'s healthy voting members (all voting members unless
    `live_only`), its leader (by heartbeat) first, then the healthy ones."""
    group = groups.get(gid)
    if group is None:
        return []
    members = []
    for m in group.members.values():
        live = zero_pb2.Member()
        live.CopyFrom(m)
        liveness.fill(live)
        if (live.healthy or not live_only) and not live.learner:
            members.append(live)
    members.sort(key=lambda m: (not m.leader, not m.healthy, m.id))
    return [m.addr for m in members]
