"""Prometheus metrics of one zero, in a registry of its own (tests run several zeros in
one process). Names are prefixed `zero_`; the HTTP /metrics endpoint renders them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.raft_id = Gauge("zero_raft_id", "This zero's Raft id", registry=r)
        self.term = Gauge("zero_raft_term", "Current Raft term", registry=r)
        self.is_leader = Gauge("zero_is_leader", "1 when this zero is the Raft leader", registry=r)
        self.has_leader = Gauge("zero_has_leader", "1 when this zero knows a leader", registry=r)
        self.leader_changes = Counter("zero_leader_changes", "Leader changes seen by this zero", registry=r)
        self.commit_index = Gauge("zero_raft_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge("zero_raft_applied_index", "Raft applied index", registry=r)
        self.proposals = Counter("zero_proposals", "Proposals by outcome (ok, failed, dropped, timeout)",
                                 ["result"], registry=r)
        self.proposal_seconds = Histogram("zero_proposal_apply_seconds", "From propose to apply of our own proposals",
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.wal_fsync_seconds = Histogram("zero_wal_fsync_seconds",
                                           "WAL write + fdatasync per Ready that must sync",
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.ready_seconds = Histogram("zero_ready_loop_seconds", "One Ready: persist, send, apply, advance",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.snapshots = Counter("zero_snapshots", "Snapshots taken by this zero", registry=r)
        self.snapshot_bytes = Gauge("zero_snapshot_bytes", "Size of the latest snapshot's data", registry=r)
        self.read_index_seconds = Histogram("zero_read_index_seconds", "One ReadIndex round (linearizable read)",
                                            buckets=_LATENCY_BUCKETS, registry=r)
        self.max_uid = Gauge("zero_lease_max_uid", "Highest UID leased through Raft", registry=r)
        self.max_txn_ts = Gauge("zero_lease_max_txn_ts", "Highest timestamp leased through Raft", registry=r)
        self.grpc_requests = Counter("zero_grpc_requests", "gRPC requests by method and status code",
                                     ["method", "code"], registry=r)
        self.grpc_seconds = Histogram("zero_grpc_request_seconds", "gRPC request latency by method",
                                      ["method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.zeros = Gauge("zero_zeros", "Zeros in the membership", registry=r)
        self.groups = Gauge("zero_groups", "Data-node groups", registry=r)
        self.members = Gauge("zero_members", "Data-node members", registry=r)
        self.tablets = Gauge("zero_tablets", "Tablets in the shard map", registry=r)
        self.members_unhealthy = Gauge("zero_members_unhealthy",
                                       "Data-node members not heard from within the liveness window "
                                       "(judged by the leader; 0 on followers)", registry=r)
        self.move_oldest_seconds = Gauge("zero_tablet_move_oldest_seconds",
                                         "Age of the tablet move in progress as seen by this zero (0: none)",
                                         registry=r)
        # The transaction oracle (zero/leader/oracle.py), counted by the leader that decided.
        self.txn_commits = Counter("zero_txn_commits", "Transactions the oracle committed", registry=r)
        self.txn_aborts = Counter("zero_txn_aborts", "Transactions the oracle aborted, by reason",
                                  ["reason"], registry=r)
        self.txn_commit_seconds = Histogram("zero_txn_commit_seconds",
                                            "From a commit request's arrival at the leader to its decision",
                                            buckets=_LATENCY_BUCKETS, registry=r)
        self.oracle_pending = Gauge("zero_oracle_pending", "Commit requests queued or being decided", registry=r)
        self.oracle_max_assigned = Gauge("zero_oracle_max_assigned",
                                         "The oracle's watermark: every commit at or below it is known", registry=r)
        self.oracle_safe_ts = Gauge("zero_oracle_safe_ts",
                                    "Transactions that started below it abort TOO_OLD", registry=r)
        # Peer transport (zero/replica/transport.py), labelled by the peer's raft id.
        self.peer_queue_depth = Gauge("zero_peer_queue_depth", "Raft messages queued for a peer",
                                      ["peer"], registry=r)
        self.peer_dropped = Counter("zero_peer_dropped_messages",
                                    "Raft messages to a peer dropped (queue full or peer down)",
                                    ["peer"], registry=r)
        self.peer_up = Gauge("zero_peer_up", "1 while the stream to a peer is up", ["peer"], registry=r)
        self.peer_sent_batches = Counter("zero_peer_sent_batches", "Message batches sent to a peer",
                                         ["peer"], registry=r)
        self.peer_refusals = Counter("zero_peer_refusals", "Batches a peer refused, by reason",
                                     ["peer", "reason"], registry=r)
        self.snapshots_sent = Counter("zero_raft_snapshots_sent", "Raft snapshots sent to peers, by result",
                                      ["result"], registry=r)
        self.snapshots_received = Counter("zero_raft_snapshots_received",
                                          "Raft snapshots received from the leader, by result",
                                          ["result"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
