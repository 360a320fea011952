"""The oracle's proposals: DecideTxns and AdvanceSafeTs, applied to OracleState
(zero/state/oracle.py) with the shard map as this index sees it.

A decision changes no membership: the membership version stays, watchers of the shard
map are not woken, and the proposal is not recorded for dedup — a decision is final per
start_ts, so a retried batch gets the same decisions from the oracle itself (and the
dedup window, counted in proposals, would otherwise hold whole batches of answers).
"""

from __future__ import annotations

from zero.pb import state_pb2
from zero.state.delta import Changes
from zero.state.oracle import Owner, Ownership
from zero.state.tables import Tables

__all__ = ["decide_txns", "advance_safe_ts", "owner_lookup"]


def owner_lookup(t: Tables) -> Ownership:
    owner, groups = t.owner, t.state.groups

    def owner_of(name: str) -> Owner | None:
        gid = owner.get(name)
        if gid is None:
            return None
        return Owner(gid, groups[gid].tablets[name].read_only)

    return owner_of


def decide_txns(t: Tables, d: state_pb2.DecideTxns, index: int, ch: Changes) -> state_pb2.ProposalResult:
    out = t.oracle.decide(d, owner_lookup(t))
    return state_pb2.ProposalResult(decisions=state_pb2.TxnDecisions(txns=out, first_slot=d.first_commit_ts))


def advance_safe_ts(t: Tables, a: state_pb2.AdvanceSafeTs, index: int, ch: Changes) -> state_pb2.ProposalResult:
    t.oracle.advance(a)
    return state_pb2.ProposalResult(ok=True)

