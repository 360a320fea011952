"""BUGGIFY (after FoundationDB): switches inside zero's own code that push it into its
rare paths - short timeouts, tiny batches, forced snapshot installs - and that only a
simulation turns on (tests/sim). Off by default, and off costs one attribute read:

    from zero import buggify
    ...
    if buggify.ON and buggify.fire("leases.tiny-blocks"):
        size = count + 1

`enable(rng)` turns them on for one run: each site (named by its string) is switched on
for the whole run with probability `site_probability` when it is first reached, and an
enabled site then fires with probability `fire_probability` each time it is reached.
Every draw comes from the seeded `rng`, in the order the sites are reached, so a
simulation that reaches them in a fixed order replays them exactly. `disable()` turns
them off again (the simulation does after each run).

Process-global by design, as FoundationDB's: a switch deep in a module cannot be handed
in as a parameter without threading it through every layer above; the simulation runs
one schedule at a time in one event loop. A site must only change what a real
deployment could also see (a timeout that expires, a batch that is small, a follower
that needs a snapshot), never a rule of the protocol.
"""

from __future__ import annotations

import random

__all__ = ["ON", "enable", "disable", "fire", "sites"]

ON = False
_rng: random.Random | None = None
_site_probability = 0.25
_fire_probability = 0.25
_sites: dict[str, bool] = {}


def enable(rng: random.Random, *, site_probability: float = 0.25, fire_probability: float = 0.25) -> None:
    """Turn the switches on, drawing from `rng` (see the module doc)."""
    global ON, _rng, _site_probability, _fire_probability
    for name, p in (("site_probability", site_probability), ("fire_probability", fire_probability)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"buggify: {name} must be within [0, 1], got {p}")
    _rng = rng
    _site_probability = site_probability
    _fire_probability = fire_probability
    _sites.clear()
    ON = True


def disable() -> None:
    global ON, _rng
    ON = False
    _rng = None
    _sites.clear()


def fire(site: str) -> bool:
    """True when the switch at `site` fires now (never while disabled)."""
    rng = _rng
    if rng is None:
        return False
    on = _sites.get(site)
    if on is None:
        on = _sites[site] = rng.random() < _site_probability
    return on and rng.random() < _fire_probability


def sites() -> dict[str, bool]:
    """The sites reached since `enable`, and whether each was switched on."""
    return dict(_sites)
