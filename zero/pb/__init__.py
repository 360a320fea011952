"""zero.pb: generated protobuf and gRPC modules of package zero.v1 (do not edit them).

  zero_pb2            membership state, shard map, the Zero and ZeroAdmin APIs
  datanode_pb2        the DataNode API (tablet moves, the reference node's Put/Get)
  raft_transport_pb2  the Raft API between zero peers (batches, joins, snapshots)
  state_pb2           Proposal and the replicated-state snapshot (zero/state/machine.py)

Regenerate with scripts/gen_protos.sh; tests/test_generated_protos.py checks they are current.

Import the module you need (``from zero.pb import zero_pb2``); nothing is imported eagerly,
so using zero_pb2 does not load raftcore (which raft_transport_pb2 depends on).
"""
