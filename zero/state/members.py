"""Data-node members and their groups: Connect (join or re-address) and RemoveMember.

Member ids come from `next_member_id` and are never reused; a removed member stays in
`state.removed` and is refused forever, while its address becomes free for a newcomer.
Groups are never deleted: a new group is max(existing) + 1. An address names one member
or one zero, never both.

A new member without a group joins the lowest group with room whose members lack its
spread-label value (zero/state/spread.py; "room": fewer voters than the group's size,
and not draining), else opens a new group. Labels are replaced by every Connect that
carries them (a node restarted with new labels).
"""

from __future__ import annotations

from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import rules, validate
from zero.state.delta import Changes
from zero.state.tables import UINT32_MAX, UINT64_MAX, Tables, copy

__all__ = ["connect", "remove_member"]


def connect(t: Tables, c: state_pb2.ConnectMember, index: int, ch: Changes) -> state_pb2.ProposalResult:
    addr = validate.address(c.addr)
    rules.check_labels(c.labels)
    holder = t.addr_member.get(addr)
    if c.id:
        if c.id in t.removed_members:
            raise FailedPreconditionError(
                f"member {c.id} was removed from the cluster; a removed id never rejoins "
                f"(start the node with a fresh data directory)")
        if holder is not None and holder != c.id:
            raise FailedPreconditionError(f"address {addr} is held by member {holder}, not {c.id}")
        gid = t.member_group.get(c.id)
        if gid is None:
            raise NotFoundError(f"member {c.id} is unknown; connect with id 0 to join as a new member")
        if c.group_id and c.group_id != gid:
            raise FailedPreconditionError(f"member {c.id} belongs to group {gid}, not {c.group_id}")
        member = t.state.groups[gid].members[c.id]
        if member.addr != addr:
            t.check_addr_free_of_zeros(addr)
            del t.addr_member[member.addr]
            member.addr = addr
            t.addr_member[addr] = c.id
            ch.members.add(c.id)
        if c.labels and dict(c.labels) != dict(member.labels):
            member.labels.clear()
            member.labels.update(c.labels)
            t.group_changed(gid)
            ch.members.add(c.id)
        return state_pb2.ProposalResult(member=member)
    if holder is not None:  # idempotent, as Dgraph Zero: the address names the member
        return state_pb2.ProposalResult(member=t.member(holder))
    t.check_addr_free_of_zeros(addr)
    gid = _choose_group(t, c)
    if t.snap.next_member_id > UINT64_MAX:
        raise FailedPreconditionError("member ids are exhausted")
    mid = t.snap.next_member_id
    t.snap.next_member_id += 1
    group = t.state.groups[gid]  # creates a requested group that did not exist yet
    group.members[mid].CopyFrom(zero_pb2.Member(id=mid, group_id=gid, addr=addr, learner=c.learner,
                                                 labels=c.labels))
    t.member_group[mid] = gid
    t.addr_member[addr] = mid
    t.room.set(gid, t.voters(gid) + (not c.learner))  # also enters a new group
    t.group_changed(gid)
    ch.members.add(mid)
    return state_pb2.ProposalResult(member=group.members[mid])


def _choose_group(t: Tables, c: state_pb2.ConnectMember) -> int:
    """The requested group, else the lowest with room lacking the member's spread
    value, else a new group. Learners replicate a group they must name."""
    if c.replicas == 0:
        raise InvalidArgumentError("replicas must be at least 1")
    groups = t.state.groups
    if c.learner:
        if not c.group_id:
            raise InvalidArgumentError("a learner must name the group it replicates")
        if c.group_id not in groups:
            raise NotFoundError(f"group {c.group_id} does not exist")
        return c.group_id
    if c.group_id:
        if t.draining(c.group_id):
            raise FailedPreconditionError(f"group {c.group_id} is draining; it takes no new members")
        voters, size = t.voters(c.group_id), t.size(c.group_id, c.replicas)
        if voters >= size:
            raise FailedPreconditionError(
                f"group {c.group_id} already has {voters} voting members (replicas={size})")
        return c.group_id
    label = t.rules.spread_label
    value = c.labels.get(label) if label is not None else None
    room = t.spread(c.replicas).choose(value)  # without a scan (zero/state/spread.py)
    if room is not None:
        return room
    new = t.room.top + 1  # groups are never deleted: the highest ever, plus one
    if new > UINT32_MAX:
        raise FailedPreconditionError("group ids are exhausted")
    return new


def remove_member(t: Tables, r: state_pb2.RemoveMember, index: int, ch: Changes) -> state_pb2.ProposalResult:
    if r.group_id == 0:
        raise InvalidArgumentError("group 0 names a zero peer; remove zeros with RemoveZero")
    if r.node_id in t.removed_members:
        raise FailedPreconditionError(f"member {r.node_id} was already removed")
    if r.group_id not in t.state.groups:
        raise NotFoundError(f"group {r.group_id} does not exist")
    gid = t.member_group.get(r.node_id)
    if gid != r.group_id:
        where = "is unknown" if gid is None else f"is in group {gid}"
        raise NotFoundError(f"member {r.node_id} {where}, not in group {r.group_id}")
    group = t.state.groups[gid]
    member = group.members[r.node_id]
    if not member.learner and t.voters(gid) == 1:
        if group.tablets:
            how = ("its drain has not finished" if t.draining(gid)
                   else f"drain it first (zero admin drain {gid})")
            raise FailedPreconditionError(
                f"member {r.node_id} is the last voting member of group {gid}, which still "
                f"serves {len(group.tablets)} tablets; {how}")
        active = t.active_move()
        if active is not None and active.dst_group == gid:
            raise FailedPreconditionError(
                f"member {r.node_id} is the last voting member of group {gid}, "
                f"the destination of move {active.move_id} in progress")
    removed = copy(member)
    del group.members[r.node_id]
    del t.member_group[r.node_id]
    del t.addr_member[removed.addr]
    t.state.removed.append(removed)
    t.removed_members.add(r.node_id)
    if not removed.learner:
        t.room.set(gid, t.voters(gid) - 1)
    t.group_changed(gid)
    ch.removed_members.add(r.node_id)
    return state_pb2.ProposalResult(member=removed)
