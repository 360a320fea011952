"""The replicated state machine: pure.

Committed proposals in, a new state and a result out — the same on every zero, so it
imports no asyncio, grpc, time, os or socket (tests/test_layering.py enforces it).

    machine     ZeroState: apply(index, proposal) -> Applied, its readers, snapshots
    delta       what an apply changed (Delta) and its outcome (Applied)
    tables      the snapshot message and the indexes the handlers keep in step
    members     data nodes and groups         zeros      zero peers, cluster version
    tablets     claims, forced owners, sizes  moves      move records, the start check
    leases      max_uid / max_txn_ts          cluster    cluster id, rebalance switch
    dedup       exactly-once per proposal key snapshot   the bytes and their invariants
    validate    input rules                   versions   the version gate
    chunks      a full state in stream-sized pieces

The transaction oracle's conflict table and decisions go here too.
"""

__all__ = ["chunks", "cluster", "dedup", "delta", "leases", "machine", "members", "moves", "snapshot",
           "tables", "tablets", "validate", "versions", "zeros"]
