"""Liveness as the leader sees it, on a follower (issue "Operators' side", item 4b): zeros
in one process over the real transport. A follower's overlay (its /state) mirrors the
leader's view of every zero and data node from the leader's StreamMembership, also over
mutual TLS (with the zero's own certificate); a stopped zero becomes unhealthy there,
and the leader's RaftStatus says the same of its peers. (The same with real processes
and the CLI: tests/cluster/test_zero_health.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from zero.app import ZeroApp
from zero.pb import zero_pb2

from support.aio import until
from zeroapps import app_cluster

pytestmark = pytest.mark.timeout(90)


def zeros_health(app: ZeroApp) -> dict[int, bool]:
    st = app.liveness.overlay(app.node.state.state_copy())
    return {zid: z.healthy for zid, z in st.zeros.items()}


def member_health(app: ZeroApp, mid: int) -> bool | None:
    st = app.liveness.overlay(app.node.state.state_copy())
    for g in st.groups.values():
        if mid in g.members:
            return g.members[mid].healthy
    return None


async def check(apps: list[ZeroApp]) -> None:
    leader = next(a for a in apps if a.node.is_leader)
    follower, other = [a for a in apps if a is not leader]
    ids = sorted(a.node.raft_id for a in apps)
    every = {rid: True for rid in ids}
    for a in apps:
        await until(lambda a=a: zeros_health(a) == every, 20, message=f"zero {a.node.raft_id} sees every zero healthy")

    # A data node heartbeats the leader: the follower shows it healthy too (its own
    # liveness table is empty; the leader's view arrives on the stream).
    applied = await leader.node.propose(_connect("dn-1:7080"))
    mid = applied.member.id
    await until(lambda: member_health(follower, mid) is not None, 10, message="the follower applied the Connect")
    assert member_health(follower, mid) is False
    leader.liveness.beat(mid, leader=True)
    for a in (leader, follower):
        await until(lambda a=a: member_health(a, mid) is True, 10, message=f"zero {a.node.raft_id}: the member healthy")

    # A zero stops: the leader judges it, the follower shows the leader's judgement.
    gone = other.node.raft_id
    object.__setattr__(other.node.opts, "transfer_on_stop", 0.0)
    await other.stop()
    want = {**every, gone: False}
    for a in (leader, follower):
        await until(lambda a=a: zeros_health(a) == want, 10,
                    message=f"zero {a.node.raft_id} sees zero {gone} unhealthy")
    st = await _raft_status(leader)
    assert {pid: p.recent_active for pid, p in st.progress.items()} == want


def _connect(addr: str) -> Any:
    from zero.pb import state_pb2
    return state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=addr, replicas=1))


async def _raft_status(app: ZeroApp) -> zero_pb2.RaftStatusResponse:
    from zero.frontdoor.admin_service import ZeroAdminService
    return await ZeroAdminService(app.node, app.liveness).RaftStatus(zero_pb2.RaftStatusRequest(), None)


async def _stop_at_once(apps: list[ZeroApp]) -> None:
    """Stop every zero without handing leadership over (the others stop too)."""
    for a in apps:
        if a.node is not None:
            object.__setattr__(a.node.opts, "transfer_on_stop", 0.0)
    await asyncio.gather(*(a.stop() for a in apps), return_exceptions=True)


def test_a_follower_shows_the_leaders_view(tmp_path: Path) -> None:
    async def main() -> None:
        apps = await app_cluster(tmp_path, 3)
        try:
            await check(apps)
        finally:
            await _stop_at_once(apps)
    asyncio.run(main())


def test_a_follower_shows_the_leaders_view_over_tls(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="the [test] extra installs cryptography")
    from support.tls import CA

    CA().write(tmp_path / "pki", "zero-1", "zero")
    tls_dir = str(tmp_path / "pki")

    async def main() -> None:
        apps = await app_cluster(tmp_path, 3, peer_host="localhost", tls_dir=tls_dir)
        try:
            await check(apps)
        finally:
            await _stop_at_once(apps)
    asyncio.run(main())
