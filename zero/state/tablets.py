"""Tablets: first claims, forced reassignments and reported sizes.

A tablet is owned by exactly one group: it is stored in exactly one `Group.tablets`.
Ownership changes only by a first claim (the first claim wins; a claim of an owned
tablet answers with its owner), by a forced reassignment (`zero admin`'s force, no copy)
or by a committed move (zero/state/moves.py), and it ends by DeleteTablet (refused while
the tablet moves). Each obeys the placement rules (zero/state/placement.py): a claim is
placed where the rules allow, whatever group it names; a forced assignment that would
break a rule is refused naming it.
"""

from __future__ import annotations

from zero.errors import FailedPreconditionError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import placement, validate
from zero.state.delta import Changes
from zero.state.tables import Tables

__all__ = ["claim_tablets", "force_tablet", "tablet_sizes", "delete_tablet"]


def claim_tablets(t: Tables, c: state_pb2.ClaimTablets, index: int, ch: Changes) -> state_pb2.ProposalResult:
    # Check the whole batch first (simulating earlier claims of the same batch) so a
    # refused batch changes nothing.
    claimed: dict[str, int] = {}
    for tab in c.tablets:
        validate.tablet_name(tab.predicate)
        if t.owner.get(tab.predicate) or claimed.get(tab.predicate) or not tab.group_id:
            continue
        if tab.group_id not in t.state.groups:
            raise NotFoundError(f"group {tab.group_id} does not exist (claiming tablet {tab.predicate!r})")
        claimed[tab.predicate] = placement.place(t, tab.predicate, tab.group_id)
    out = state_pb2.TabletList()
    for tab in c.tablets:
        owner = t.owner.get(tab.predicate, 0)
        if not owner and tab.group_id:
            owner = claimed[tab.predicate]
            t.state.groups[owner].tablets[tab.predicate].CopyFrom(
                zero_pb2.Tablet(predicate=tab.predicate, group_id=owner))
            t.owner[tab.predicate] = owner
            ch.tablets.add(tab.predicate)
        if owner:
            out.tablets.append(t.state.groups[owner].tablets[tab.predicate])
        else:
            out.tablets.append(zero_pb2.Tablet(predicate=tab.predicate))
    return state_pb2.ProposalResult(tablets=out)


def force_tablet(t: Tables, f: state_pb2.ForceTablet, index: int, ch: Changes) -> state_pb2.ProposalResult:
    name = validate.tablet_name(f.predicate)
    gid = validate.group_id(f.group_id)
    if gid not in t.state.groups:
        raise NotFoundError(f"group {gid} does not exist")
    active = t.active_move()
    if active is not None and active.predicate == name:
        raise FailedPreconditionError(f"tablet {name!r} is being moved (move {active.move_id})")
    current = t.owner.get(name, 0)
    if current != gid:
        placement.check_allowed(t, name, gid)
    if current != gid:
        tablet = zero_pb2.Tablet(predicate=name)
        if current:
            tablet.CopyFrom(t.state.groups[current].tablets[name])
            del t.state.groups[current].tablets[name]
        tablet.group_id = gid
        t.state.groups[gid].tablets[name].CopyFrom(tablet)
        t.owner[name] = gid
        ch.tablets.add(name)
    return state_pb2.ProposalResult(
        tablets=state_pb2.TabletList(tablets=[t.state.groups[gid].tablets[name]]))


def tablet_sizes(t: Tables, s: zero_pb2.TabletSizes, index: int, ch: Changes) -> state_pb2.ProposalResult:
    if s.group_id not in t.state.groups:
        raise NotFoundError(f"group {s.group_id} does not exist")
    for name, size in s.sizes.items():
        validate.tablet_name(name)
        validate.tablet_size(name, size)
    for rates in (s.read_rates, s.write_rates):
        for name, rate in rates.items():
            validate.tablet_name(name)
            validate.rate(name, rate)
    tablets = t.state.groups[s.group_id].tablets
    for name in sorted(s.sizes):
        # A report about a tablet this group no longer owns is stale: ignore it.
        if name in tablets and tablets[name].size_bytes != s.sizes[name]:
            tablets[name].size_bytes = s.sizes[name]
            ch.tablets.add(name)
    for name in sorted(s.read_rates):
        if name in tablets and tablets[name].read_rate != s.read_rates[name]:
            tablets[name].read_rate = s.read_rates[name]
            ch.tablets.add(name)
    for name in sorted(s.write_rates):
        if name in tablets and tablets[name].write_rate != s.write_rates[name]:
            tablets[name].write_rate = s.write_rates[name]
            ch.tablets.add(name)
    return state_pb2.ProposalResult(ok=True)


def delete_tablet(t: Tables, d: state_pb2.DeleteTablet, index: int, ch: Changes) -> state_pb2.ProposalResult:
    name = validate.tablet_name(d.predicate)
    gid = t.owner.get(name, 0)
    if not gid:
        raise NotFoundError(f"tablet {name!r} is not served by any group")
    active = t.active_move()
    if active is not None and active.predicate == name:
        raise FailedPreconditionError(
            f"tablet {name!r} is being moved (move {active.move_id}); delete it after the move ends")
    tablets = t.state.groups[gid].tablets
    deleted = zero_pb2.Tablet()
    deleted.CopyFrom(tablets[name])
    del tablets[name]
    del t.owner[name]
    ch.removed_tablets.add(name)
    return state_pb2.ProposalResult(tablets=state_pb2.TabletList(tablets=[deleted]))
