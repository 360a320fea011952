"""Versions: what this zero writes and reads, and the cluster version that gates proposals
(docs/DESIGN.md "Versions and upgrades").

Three kinds of version, each checked where the bytes are read:

- On-disk formats. Every file a zero writes names its format in a header whose layout
  never changes, so a file from a newer zero is recognised as newer (not as damage) and
  refused with a message that says so: WAL segments and snapshot files
  (raftcore.wal.FORMAT_VERSION), the state inside a snapshot (zero.state.snapshot.FORMAT), backups
  (zero.ops.backup.FORMAT), IDENTITY (zero.replica.identity.FORMAT).
- The peer protocol (zero.replica.transport.PROTOCOL, in every RaftBatch, SnapshotChunk and
  JoinClusterRequest): a receiver refuses another protocol.
- The cluster version. Each zero announces ZERO_VERSION (JoinClusterRequest.version, then
  AddZero.version, re-announced after every restart); the replicated state keeps the
  minimum over the current zeros (`ZeroState.cluster_version`, computed inside apply so
  every replica agrees). A proposal kind newer than the cluster version is refused by
  ZeroNode.propose with FAILED_PRECONDITION, so during a rolling upgrade no entry reaches
  the log that a member still running the old release could not decode. A zero older than
  the cluster version may not join, nor restart on a data dir that is already past it.

Version 1 is every proposal kind of state.proto as of the first release. A release that
adds a kind maps it to the new ZERO_VERSION here and bumps ZERO_VERSION. Version 2 adds
the transaction oracle's decisions (decide_txns, advance_safe_ts). Version 3 adds
placement (docs/DESIGN.md "Placement"): set_placement, set_group_replicas, drain_group,
delete_tablet, bump_lease, and new fields of old kinds that an older zero would drop
(so apply differently): a connect carrying labels, tablet sizes carrying rates. Version 4
adds moves with a FENCED phase (docs/DESIGN.md "Tablet moves"): fence_move, and start,
commit and abort carrying the new record's fields (record_version, times, progress). A
move record of an older version is rolled back by the next leader, as every orphan is.
"""

from __future__ import annotations

from collections.abc import Callable

from zero.errors import FailedPreconditionError
from zero.pb import state_pb2

__all__ = ["ZERO_VERSION", "PROPOSAL_MIN_VERSION", "required_version", "check_proposal", "effective"]

ZERO_VERSION = 4

# Proposal kinds added after the first release -> the cluster version that may carry them.
_ADDED: dict[str, int] = {"decide_txns": 2, "advance_safe_ts": 2, "set_placement": 3,
                          "set_group_replicas": 3, "drain_group": 3, "delete_tablet": 3, "bump_lease": 3,
                          "fence_move": 4}

# Proposal kind (the `change` oneof's field name) -> the cluster version that may carry it.
PROPOSAL_MIN_VERSION: dict[str, int] = {
    f.name: _ADDED.get(f.name, 1) for f in state_pb2.Proposal.DESCRIPTOR.oneofs_by_name["change"].fields
}


def effective(cluster_version: int) -> int:
    """A state with no announced zeros yet (a cluster being bootstrapped, or a zero from
    before versions were announced) runs version 1."""
    return max(1, cluster_version)


def required_version(proposal: state_pb2.Proposal) -> int:
    kind = proposal.WhichOneof("change")
    need = PROPOSAL_MIN_VERSION.get(kind or "", ZERO_VERSION)
    if kind == "connect" and proposal.connect.labels:
        need = max(need, 3)
    elif kind == "tablet_sizes" and (proposal.tablet_sizes.read_rates or proposal.tablet_sizes.write_rates):
        need = max(need, 3)
    elif kind in _MOVE_V4 and _MOVE_V4[kind](proposal):
        need = max(need, 4)
    return need


# Old move kinds -> whether this one carries version 4's fields (an older zero drops them).
_MOVE_V4: dict[str, Callable[[state_pb2.Proposal], bool]] = {
    "start_move": lambda p: bool(p.start_move.record_version or p.start_move.now_ms or p.start_move.size_bytes),
    "commit_move": lambda p: bool(p.commit_move.bytes_copied or p.commit_move.keys_copied
                                  or p.commit_move.now_ms),
    "abort_move": lambda p: bool(p.abort_move.now_ms),
}


def check_proposal(proposal: state_pb2.Proposal, cluster_version: int) -> None:
    """FailedPreconditionError when the cluster cannot carry this proposal yet."""
    need = required_version(proposal)
    have = effective(cluster_version)
    if need > have:
        what = proposal.WhichOneof("change")
        if what == "connect" and proposal.connect.labels:
            what = "connect with labels"
        elif what == "tablet_sizes" and need > PROPOSAL_MIN_VERSION["tablet_sizes"]:
            what = "tablet_sizes with read/write rates"
        elif what in _MOVE_V4 and need > PROPOSAL_MIN_VERSION[what]:
            what = f"{what} with a version-4 move record"
        raise FailedPreconditionError(
            f"{what} needs cluster version {need}, but the cluster runs {have}: "
            f"finish upgrading every zero (each announces its version when it starts)")
