"""The zero peers: AddZero and RemoveZero, and the cluster version they announce.

Raft ids come from `next_raft_id` (a space apart from data-node ids, as in Dgraph); an
AddZero with an explicit id raises the counter past it, and a removed zero's id is never
used again. The cluster version is the lowest software version the current zeros
announced (zero/state/versions.py), computed here so every replica agrees.
"""

from __future__ import annotations

from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from zero.pb import state_pb2, zero_pb2
from zero.state import validate
from zero.state.delta import Changes
from zero.state.tables import UINT64_MAX, Tables, copy

__all__ = ["add_zero", "remove_zero"]


def add_zero(t: Tables, z: state_pb2.AddZero, index: int, ch: Changes) -> state_pb2.ProposalResult:
    addr = validate.address(z.addr)
    holder = t.addr_zero.get(addr)
    rid = z.raft_id
    if rid == 0:
        if holder is not None:  # idempotent, as Connect
            return state_pb2.ProposalResult(member=t.state.zeros[holder])
        rid = t.snap.next_raft_id
    if rid in t.removed_zeros:
        raise FailedPreconditionError(f"zero {rid} was removed from the cluster; its id is never reused")
    if holder is not None and holder != rid:
        raise FailedPreconditionError(f"address {addr} is held by zero {holder}, not {rid}")
    if addr in t.addr_member:
        raise FailedPreconditionError(f"address {addr} is held by data node {t.addr_member[addr]}")
    if rid >= UINT64_MAX:
        raise InvalidArgumentError(f"raft id {rid} is out of range")
    zeros = t.state.zeros
    if z.version and t.snap.zero_versions.get(rid) != z.version:
        t.snap.zero_versions[rid] = z.version  # the zero's announcement (zero/state/versions.py)
        ch.settings = True
    if rid in zeros and zeros[rid].addr == addr:
        _update_cluster_version(t, ch)
        return state_pb2.ProposalResult(member=zeros[rid])
    if rid in zeros:
        del t.addr_zero[zeros[rid].addr]
    zeros[rid].CopyFrom(zero_pb2.Member(id=rid, addr=addr))
    t.addr_zero[addr] = rid
    t.snap.next_raft_id = max(t.snap.next_raft_id, rid + 1)
    ch.zeros.add(rid)
    _update_cluster_version(t, ch)
    return state_pb2.ProposalResult(member=zeros[rid])


def remove_zero(t: Tables, z: state_pb2.RemoveZero, index: int, ch: Changes) -> state_pb2.ProposalResult:
    if z.raft_id in t.removed_zeros:
        raise FailedPreconditionError(f"zero {z.raft_id} was already removed")
    zeros = t.state.zeros
    if z.raft_id not in zeros:
        raise NotFoundError(f"zero {z.raft_id} is not a member of the cluster")
    if len(zeros) == 1:
        raise FailedPreconditionError(f"zero {z.raft_id} is the last zero; it cannot be removed")
    removed = copy(zeros[z.raft_id])
    del zeros[z.raft_id]
    del t.addr_zero[removed.addr]
    t.state.removed.append(removed)
    t.removed_zeros.add(z.raft_id)
    if z.raft_id in t.snap.zero_versions:
        del t.snap.zero_versions[z.raft_id]
    ch.removed_zeros.add(z.raft_id)
    _update_cluster_version(t, ch)
    return state_pb2.ProposalResult(member=removed)


def _update_cluster_version(t: Tables, ch: Changes) -> None:
    """cluster_version = the lowest version announced by a current zero (one that has
    not announced counts as 1, the first release); 0 while there are no zeros."""
    st = t.state
    versions = t.snap.zero_versions
    v = min((versions.get(rid, 1) for rid in st.zeros), default=0)
    if v != st.cluster_version:
        st.cluster_version = v
        ch.header = True
