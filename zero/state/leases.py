"""The lease counters: `max_uid` and `max_txn_ts`, raised by LeaseIds proposals.

A lease of `count` ids hands the proposer `[max+1, max+count]`, so the counters only
grow and a block is never handed twice; the leader then serves ids from its blocks in
memory (zero/leader/leases.py). A lease that would wrap around uint64 is refused: the id
space is exhausted, not recycled. MAX_LEASE bounds one proposal against a runaway
proposer (a restore's margin, zero/ops/recovery.py, stays below it too).
"""

from __future__ import annotations

from zero.errors import FailedPreconditionError, InvalidArgumentError
from zero.pb import state_pb2, zero_pb2
from zero.state.delta import Changes
from zero.state.tables import UINT64_MAX, Tables

__all__ = ["MAX_LEASE", "MAX_BUMP", "lease_ids", "bump_lease"]

MAX_LEASE = 1 << 32  # ids one lease proposal may take; guards against a runaway proposer
MAX_BUMP = (1 << 63) - 1  # a bump's floor stays below 2^63 (room left to lease above it)


def lease_ids(t: Tables, lease: state_pb2.LeaseIds, index: int, ch: Changes) -> state_pb2.ProposalResult:
    if not 1 <= lease.count <= MAX_LEASE:
        raise InvalidArgumentError(f"lease count {lease.count} must be between 1 and {MAX_LEASE}")
    st = t.snap.state
    kind, count = lease.kind, lease.count
    if kind == zero_pb2.UID:
        current = st.max_uid
    elif kind == zero_pb2.TIMESTAMP:
        current = st.max_txn_ts
    else:
        raise InvalidArgumentError(f"unknown id kind {kind}")
    if count > UINT64_MAX - current:
        raise FailedPreconditionError(
            f"leasing {count} ids above {current} would overflow uint64: ids are exhausted")
    end = current + count
    if kind == zero_pb2.UID:
        st.max_uid = end
    else:
        st.max_txn_ts = end
    ch.header = True
    return state_pb2.ProposalResult(ids=zero_pb2.AssignedIds(start_id=current + 1, end_id=end))


def bump_lease(t: Tables, b: zero_pb2.BumpLeaseRequest, index: int, ch: Changes) -> state_pb2.ProposalResult:
    """Raise max_uid or max_txn_ts to at least `floor` (after a bulk load, as Dgraph's
    bump); never lowers. The answer is the range that became leased, [old + 1, floor],
    or [0, max] when the counter was already at or above the floor."""
    if not 1 <= b.floor <= MAX_BUMP:
        raise InvalidArgumentError(f"floor {b.floor} must be between 1 and 2^63 - 1")
    st = t.snap.state
    if b.kind == zero_pb2.UID:
        current = st.max_uid
    elif b.kind == zero_pb2.TIMESTAMP:
        current = st.max_txn_ts
    else:
        raise InvalidArgumentError(f"unknown id kind {b.kind}")
    if b.floor <= current:
        return state_pb2.ProposalResult(ids=zero_pb2.AssignedIds(start_id=0, end_id=current))
    if b.kind == zero_pb2.UID:
        st.max_uid = b.floor
    else:
        st.max_txn_ts = b.floor
    ch.header = True
    return state_pb2.ProposalResult(ids=zero_pb2.AssignedIds(start_id=current + 1, end_id=b.floor))
