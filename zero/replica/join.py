"""Joining a cluster, the joiner's side: JoinCluster over gRPC, following the leader.

The answering side (the leader adds the joiner as a learner) is Membership.handle_join
(zero/replica/membership.py); the transport offers this call as PeerTransport.join.
"""

from __future__ import annotations

import random

import grpc

from zero.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    ZeroError,
)
from zero.log import Logger
from zero.pb import raft_transport_pb2 as tpb
from zero.pb import raft_transport_pb2_grpc as tgrpc
from zero.replica.ports import Clock
from zero.state.versions import ZERO_VERSION

__all__ = ["join_cluster"]

# A refusal with one of these codes is final: retrying through another zero would not help.
_STATUS_ERRORS: dict[grpc.StatusCode, type[ZeroError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
}


async def join_cluster(peer: str, my_addr: str, raft_id: int, *, timeout: float, logger: Logger, clock: Clock,
                       rng: random.Random, credentials: grpc.ChannelCredentials | None = None,
                       ) -> tpb.JoinClusterResponse:
    """Ask the cluster that `peer` belongs to for membership, following `zero-leader-addr`
    redirects and retrying with jittered backoff until `timeout`; refusals
    (FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND) are raised at once."""
    deadline = clock.monotonic() + timeout
    target = peer
    attempt = 0
    last = ""
    req = tpb.JoinClusterRequest(raft_id=raft_id, addr=my_addr, protocol=tpb.RAFT_PROTOCOL_V1, version=ZERO_VERSION)
    while True:
        channel = (grpc.aio.secure_channel(target, credentials) if credentials is not None
                   else grpc.aio.insecure_channel(target))
        redirect = ""
        try:
            left = deadline - clock.monotonic()
            resp: tpb.JoinClusterResponse = await tgrpc.RaftStub(channel).JoinCluster(
                req, timeout=max(0.5, min(15.0, left)))
            logger.info("joined the cluster", via=target, raft_id=resp.raft_id, cluster_id=resp.cluster_id)
            return resp
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code in _STATUS_ERRORS:
                raise _STATUS_ERRORS[code](f"joining through {target}: {e.details()}") from None
            md = dict(e.trailing_metadata() or ())
            redirect = str(md.get("zero-leader-addr", ""))
            last = f"{target}: {code.name} {e.details()}"
        finally:
            await channel.close()
        if clock.monotonic() > deadline:
            raise UnavailableError(f"could not join the cluster through {peer} within {timeout:.0f}s (last: {last})")
        if redirect and redirect != target:
            logger.info("join redirected to the leader", leader=redirect)
            target = redirect
            continue
        attempt += 1
        logger.info("join attempt failed; retrying", error=last, attempt=attempt)
        target = peer if target != peer and attempt % 2 == 0 else target
        await clock.sleep(rng.uniform(0.05, min(2.0, 0.1 * 2 ** attempt)))
