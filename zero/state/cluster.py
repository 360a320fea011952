"""Cluster-wide settings: the cluster id (set once) and the rebalancer's switch.

Both are replicated so that every zero, and a new leader, sees the same: the cluster id
is chosen by the first leader (randomness stays with the proposer) and fences peers and
data nodes of other clusters; the switch is `zero admin rebalance on|off`.
"""

from __future__ import annotations

from zero.errors import FailedPreconditionError
from zero.pb import state_pb2
from zero.state import validate
from zero.state.delta import Changes
from zero.state.tables import Tables

__all__ = ["set_cluster_id", "set_rebalance"]


def set_cluster_id(t: Tables, s: state_pb2.SetClusterId, index: int, ch: Changes) -> state_pb2.ProposalResult:
    cid = validate.cluster_id(s.cluster_id)
    if t.state.cluster_id and t.state.cluster_id != cid:
        raise FailedPreconditionError(
            f"cluster id is already {t.state.cluster_id!r}; it is set once")
    if not t.state.cluster_id:
        t.state.cluster_id = cid
        ch.header = True
    return state_pb2.ProposalResult(ok=True)


def set_rebalance(t: Tables, s: state_pb2.SetRebalanceEnabled, index: int, ch: Changes) -> state_pb2.ProposalResult:
    if t.snap.rebalance_disabled == s.enabled:
        t.snap.rebalance_disabled = not s.enabled
        ch.settings = True
    return state_pb2.ProposalResult(ok=True)
