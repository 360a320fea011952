"""Shape of the zero.v1 API: services, streaming kinds, and the fields peers rely on."""

from __future__ import annotations

import pytest

from zero.pb import datanode_pb2, raft_transport_pb2, state_pb2, zero_pb2

SERVICES = {
    # service: {rpc: (client_streaming, server_streaming)}
    (zero_pb2, "Zero"): {"Connect": (False, False), "Heartbeat": (False, False),
                         "ShouldServe": (False, False), "Tablets": (False, False),
                         "UpdateTabletSizes": (False, False), "AssignIds": (False, False),
                         "Timestamps": (False, False), "GetState": (False, False),
                         "StreamMembership": (False, True), "TimestampStream": (True, True),
                         "CommitOrAbort": (False, False), "CommitStream": (True, True),
                         "TryAbort": (False, False), "TxnStatus": (False, False), "Oracle": (False, True)},
    (zero_pb2, "ZeroAdmin"): {"RemoveNode": (False, False), "MoveTablet": (False, False),
                              "TransferLeadership": (False, False), "Snapshot": (False, False),
                              "RaftStatus": (False, False), "SetRebalance": (False, False),
                              "Backup": (False, True), "SetPlacement": (False, False),
                              "GetPlacement": (False, False), "SetGroupReplicas": (False, False),
                              "DrainGroup": (False, False), "ExplainPlacement": (False, False),
                              "DeleteTablet": (False, False), "BumpLease": (False, False),
                              "GetMoves": (False, False), "CancelMove": (False, False)},
    (raft_transport_pb2, "Raft"): {"Stream": (True, False), "Send": (False, False),
                                   "JoinCluster": (False, False), "SendSnapshot": (True, False)},
    (datanode_pb2, "DataNode"): {"MoveTablet": (False, False), "ReceiveTablet": (True, False),
                                 "DropTablet": (False, False), "Put": (False, False), "Get": (False, False),
                                 "TxnGet": (False, False), "Prewrite": (False, False)},
}


@pytest.mark.parametrize("module, name", list(SERVICES), ids=[n for _, n in SERVICES])
def test_services(module, name) -> None:  # type: ignore[no-untyped-def]
    svc = module.DESCRIPTOR.services_by_name[name]
    assert svc.full_name == f"zero.v1.{name}"
    got = {m.name: (m.client_streaming, m.server_streaming) for m in svc.methods}
    assert got == SERVICES[(module, name)]


def test_should_serve_takes_and_returns_tablet() -> None:
    m = zero_pb2.DESCRIPTOR.services_by_name["Zero"].methods_by_name["ShouldServe"]
    assert m.input_type.full_name == m.output_type.full_name == "zero.v1.Tablet"


def test_peer_messages_carry_cluster_sender_and_version() -> None:
    for msg in (raft_transport_pb2.RaftBatch, raft_transport_pb2.SnapshotChunk):
        fields = msg.DESCRIPTOR.fields_by_name
        assert {"protocol", "cluster_id", "from_id", "to_id"} <= set(fields)


def test_every_proposal_change_is_handled() -> None:
    from zero.state.machine import HANDLERS

    changes = {f.name for f in state_pb2.Proposal.DESCRIPTOR.oneofs_by_name["change"].fields}
    assert changes == set(HANDLERS)


def test_grpc_stubs_import() -> None:
    from zero.pb import datanode_pb2_grpc, raft_transport_pb2_grpc, zero_pb2_grpc

    for name in ("ZeroStub", "ZeroAdminServicer", "add_ZeroServicer_to_server"):
        assert hasattr(zero_pb2_grpc, name)
    assert hasattr(raft_transport_pb2_grpc, "RaftStub")
    assert hasattr(datanode_pb2_grpc, "DataNodeServicer")
