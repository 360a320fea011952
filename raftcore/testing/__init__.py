"""raftcore.testing: deterministic test infrastructure for raftcore (public, like
trio.testing).

How the layers stack:
  network     SimNetwork: a seeded, tick-driven network with drops, duplicates, delays,
              reordering, partitions, one-way cuts and crashed (down) nodes
  app         RecordingStateMachine: the tiny application each node runs (the applied
              entries, in order; its snapshot is that sequence)
  invariants  InvariantChecker: Raft's safety properties, checked event by event
  simnode     SimNode: a RawNode, its MemoryStorage (its disk) and its state machine;
              its lifecycle (start on a storage, crash, stop after removal)
  trace       Trace: the events of a run, their digest, failure reports
  driver      NodeDriver: each node's application by the Ready contract (persist,
              send, apply, advance, snapshot + compact), deliveries and transport reports
  cluster     SimCluster: n SimNodes on a SimNetwork, ticked and settled; client
              actions (proposals, membership changes, leader transfer, ReadIndex) and
              faults (crash/restart, partitions)

Beside them, the scaffolding of etcd-io/raft's own tests, for the scenarios ported from
them (tests/raftcore):
  etcd_raft     newTestRaft-level helpers: etcd's test config, storage and bare Raft
                (new_raft, read_messages, next_ents, ...), and the check that no Ready
                carries a response to unpersisted state
  etcd_network  Network: etcd's `network` of RawNodes (Node) driven through the Ready
                contract, with cut/isolate/drop/ignore/msg_hook and black holes

Nothing here uses threads, asyncio or clocks: a seed determines the whole run.
"""

from .app import AppliedEntry, RecordingStateMachine
from .cluster import LivenessError, SimCluster
from .etcd_network import BLACK_HOLE, Network, Node, PeerFactory, ents_node, new_node, voted_node
from .etcd_raft import (
    NullLogger,
    advance_messages_after_append,
    check_ready_responses,
    entries_with_terms,
    log_entries,
    memory_storage,
    msg,
    new_config,
    new_raft,
    new_rawnode,
    new_storage,
    next_ents,
    persist,
    read_messages,
)
from .invariants import InvariantChecker, InvariantViolation
from .network import NetworkStats, SimNetwork
from .simnode import NodeState, SimNode

__all__ = [
    "SimNetwork",
    "NetworkStats",
    "SimCluster",
    "SimNode",
    "NodeState",
    "LivenessError",
    "InvariantChecker",
    "InvariantViolation",
    "RecordingStateMachine",
    "AppliedEntry",
    # etcd-io/raft's test scaffolding
    "Network",
    "Node",
    "BLACK_HOLE",
    "PeerFactory",
    "new_node",
    "ents_node",
    "voted_node",
    "NullLogger",
    "msg",
    "entries_with_terms",
    "new_storage",
    "new_config",
    "new_raft",
    "new_rawnode",
    "persist",
    "advance_messages_after_append",
    "read_messages",
    "next_ents",
    "log_entries",
    "memory_storage",
    "check_ready_responses",
]
