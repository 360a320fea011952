"""The replica: one zero's Raft node around the pure state machine.

ZeroNode (node.py) runs on three seams it is given (ports.py): a PeerTransport, the
WalStorage it persists to, a Clock. Around it, a module per concept:

    ready_loop   tick raftcore's Node; per Ready: send, persist (wal.py), apply, advance
    apply        ZeroState as applied, with the Raft ConfState
    proposals    proposals waiting for their own apply; conf changes whose slot was taken
    reads        ReadIndex rounds shared by concurrent linearizable readers
    snapshots    snapshot-and-compact; fresh snapshots for followers
    leadership   who leads, the record of changes, the leadership callbacks
    boot         restart, bootstrap or join on a data dir; identity (the files beside the WAL)
    duties       run_leader_task, cluster identity, --my announcements, leases after a WAL repair
    membership   joins, removal, leadership transfer; confchange (one at a time), promotion,
                 join (the joiner's side)
    transport    the gRPC PeerTransport: peer (one stream per zero), raft_service (inbound)

It knows nothing of the services above it: they subscribe to its events (leader
changes, applied batches); the app wires them, and every leader duty, in one place.
"""
