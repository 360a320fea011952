"""The simulation's later faults: BUGGIFY switches (zero/buggify.py), clock-rate skew,
membership changes through the real join and remove paths, forced snapshot installs."""

from __future__ import annotations

import asyncio
import random

import pytest

from zero import buggify

from .loop import SimClock, SimLoop
from .schedule import run_schedule


def _draws(seed: int, sites: list[str]) -> list[bool]:
    buggify.enable(random.Random(seed))
    try:
        return [buggify.fire(s) for s in sites]
    finally:
        buggify.disable()


def test_buggify_is_off_unless_enabled_and_replays_from_its_seed() -> None:
    sites = [f"site{i % 7}" for i in range(400)]
    assert not buggify.ON and not any(buggify.fire(s) for s in sites) and buggify.sites() == {}
    a, b = _draws(5, sites), _draws(5, sites)
    assert a == b and any(a) and not all(a)  # seeded: the same switches fire in a replay
    assert not buggify.ON and buggify.sites() == {}  # disable() forgets the run's sites
    # A site that is off for the run never fires; one that is on fires about a quarter of the time.
    buggify.enable(random.Random(5), site_probability=1.0, fire_probability=1.0)
    try:
        assert all(buggify.fire(s) for s in sites) and set(buggify.sites().values()) == {True}
    finally:
        buggify.disable()


@pytest.mark.parametrize("bad", [{"site_probability": 1.5}, {"fire_probability": -0.1}])
def test_buggify_refuses_bad_probabilities_and_stays_off(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="within"):
        buggify.enable(random.Random(1), **bad)
    assert not buggify.ON and not buggify.fire("x")


def test_a_skewed_clock_runs_at_its_rate_without_jumps() -> None:
    loop = SimLoop(random.Random(1))
    clock = SimClock(loop, offset=100.0, rate=2.0)
    seen: list[tuple[float, float]] = []

    async def main() -> None:
        await clock.sleep(1.0)  # one second of this clock: half a second of the loop's
        seen.append((loop.time(), clock.monotonic()))
        clock.set_rate(0.5)
        seen.append((loop.time(), clock.monotonic()))  # no jump at the change
        await asyncio.sleep(1.0)
        seen.append((loop.time(), clock.monotonic()))

    loop.run_until_complete(main())
    loop.close()
    assert seen == [pytest.approx((0.5, 101.0)), pytest.approx((0.5, 101.0)), pytest.approx((1.5, 101.5))]
    with pytest.raises(ValueError, match="positive"):
        clock.set_rate(0.0)
    assert clock.rate == 0.5


# A seed whose schedule adds zeros, removes one through the leader's remove_zero (the
# RemoveNode path) and retires it, skews clocks, and runs with BUGGIFY on (forced
# snapshot installs among its switches); it must pass every check.
MEMBERSHIP_SEED = 10


def test_membership_changes_skew_and_buggify_end_clean_and_replay() -> None:
    r = run_schedule(MEMBERSHIP_SEED, 30.0)
    assert not r.violations, r.violations
    again = run_schedule(MEMBERSHIP_SEED, 30.0)
    assert (again.digest, again.events, again.faults) == (r.digest, r.events, r.faults)
    f = r.faults
    assert f["added"] >= 1 and f["retired"] >= 1 and f["skews"] >= 1, f
    assert "snapshots.forced-installs" in r.buggified and f["snapshots sent"] >= 1, (r.buggified, f)
