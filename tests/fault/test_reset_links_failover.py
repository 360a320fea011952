"""A follower whose connection to a healthy leader is reset forgets the leader and
campaigns (zero/replica/failover.py) — and PreVote keeps that from deposing the
leader: the other follower still hears it and refuses the pre-vote. Resets through the
fault proxy, again and again, cause no leader change and no new term."""

from __future__ import annotations

import time

import pytest

from .loopback import LoopbackCluster


@pytest.mark.timeout(120)
def test_resetting_a_followers_links_to_a_healthy_leader_changes_no_leader(tmp_path) -> None:
    c = LoopbackCluster(tmp_path / "c", 3, proxies=True, seed=11).start()
    try:
        lead = c.pc.wait_leader()
        follower = next(z for z in c.nodes if z is not lead)
        st = lead.status()
        assert st is not None
        term = st.term
        net = c.net
        assert net is not None
        resets = 0
        end = time.monotonic() + 6
        while time.monotonic() < end:
            resets += net.reset(follower.name, lead.name) + net.reset(lead.name, follower.name)
            time.sleep(0.15)
        assert resets >= 10, resets  # the links were up and were reset, repeatedly
        assert "forgetting it and campaigning soon" in follower.log_tail(200000), "the reset went unnoticed"
        now = c.pc.wait_leader()
        st = now.status()
        assert now is lead and st is not None and st.term == term, (now.name, st)
    finally:
        c.cleanup()
