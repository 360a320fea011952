"""raftcore.testing: deterministic test infrastructure for raftcore (public, like
trio.testing).

How the layers stack:
  network     SimNetwork: a seeded, tick-driven network with drops, duplicates, delays,
              reordering, partitions, one-way cuts and crashed (down) nodes
  app         RecordingStateMachine: the tiny application each node runs (the applied
              entries, in order; its snapshot is that sequence)
  invariants  InvariantChecker: Raft's safety properties, checked event by event
  cluster     SimCluster: n RawNodes with their MemoryStorage, driven through the Ready
              contract on a SimNetwork; crash/restart, membership changes, snapshots,
              leader transfer, ReadIndex, and a trace of events for failure reports

Nothing here uses threads, asyncio or clocks: a seed determines the whole run.
"""

from .app import AppliedEntry, RecordingStateMachine
from .cluster import LivenessError, NodeState, SimCluster, SimNode
from .invariants import InvariantChecker, InvariantViolation
from .network import NetworkStats, SimNetwork

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
]
