"""Any zero answers any data-node RPC: followers forward to the leader (one hop) and
say who leads in trailing metadata. Three ZeroApps (gRPC + Raft transport) in one
process, on free loopback ports."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from zero.client import ZeroClient
from zero.pb import zero_pb2, zero_pb2_grpc

from support.aio import until
from zeroapps import app_cluster

TOKEN = "tok"
ADMIN_MD = (("authorization", f"Bearer {TOKEN}"),)






@pytest.mark.timeout(90)
def test_followers_forward_and_name_the_leader(tmp_path):
    async def main() -> None:
        apps = await app_cluster(tmp_path, admin_token=TOKEN)
        try:
            leader = next(a for a in apps if a.node.is_leader)
            follower = next(a for a in apps if not a.node.is_leader)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{follower.grpc_port}") as ch:
                z = zero_pb2_grpc.ZeroStub(ch)
                admin = zero_pb2_grpc.ZeroAdminStub(ch)
                # Leader-only work through a follower: forwarded, answered.
                call = z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=5))
                ids = await call
                assert ids.end_id - ids.start_id == 4
                md = dict(await call.trailing_metadata())
                assert md["zero-leader-id"] == str(leader.node.raft_id)
                assert md["zero-leader-addr"] == leader.node.state._state.zeros[leader.node.raft_id].addr
                ts = await z.Timestamps(zero_pb2.TimestampsRequest(count=1))
                assert ts.start_id > 0
                m = (await z.Connect(zero_pb2.ConnectRequest(addr="dn1:7080"))).member
                await z.Heartbeat(zero_pb2.HeartbeatRequest(member_id=m.id, group_id=m.group_id))
                t = await z.ShouldServe(zero_pb2.Tablet(predicate="name", group_id=m.group_id))
                assert t.group_id == m.group_id
                # Errors come back as the leader's status, with its message.
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await z.AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=0))
                assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                # Admin calls too, with the token forwarded; RaftStatus stays local.
                st = await admin.RaftStatus(zero_pb2.RaftStatusRequest(), metadata=ADMIN_MD)
                assert st.id == follower.node.raft_id and st.role == "FOLLOWER"
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await admin.Snapshot(zero_pb2.SnapshotRequest())
                assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
                snap = await admin.Snapshot(zero_pb2.SnapshotRequest(), metadata=ADMIN_MD)
                assert snap.index > 0
                # The stream, through a follower.
                stream = z.StreamMembership(zero_pb2.StreamMembershipRequest())
                first = await asyncio.wait_for(stream.read(), 10)
                assert first.full and "name" in first.state.groups[m.group_id].tablets
                stream.cancel()

            # The client, given only a follower's address, works through it.
            async with ZeroClient([f"127.0.0.1:{follower.grpc_port}"]) as zc:
                assert await zc.timestamp() > ts.start_id
                zc.start_watch()
                await zc.wait_synced()
                assert zc.group_for("name") == m.group_id

            # Leadership moves: the old leader now forwards to the new one.
            new = await leader.node.transfer_leadership(to=follower.node.raft_id)
            assert new == follower.node.raft_id
            await until(lambda: all(a.node.leader_id == new for a in apps), 20, message="new leader known")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{leader.grpc_port}") as ch:
                r = await zero_pb2_grpc.ZeroStub(ch).AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=1))
                assert r.start_id > ids.end_id
        finally:
            for a in apps:
                object.__setattr__(a.node.opts, "transfer_on_stop", 0.0) if a.node else None
            await asyncio.gather(*(a.stop() for a in apps))

    asyncio.run(main())
