"""Zero, the data-node API (SPEC "gRPC"): thin translations of requests onto ZeroNode,
ZeroState, Leases, Liveness and the membership stream.

Reads are linearizable: they wait for `ZeroNode.read_barrier()` (ReadIndex) before
reading the applied state. Writes are proposals that return once applied here. The
interceptor (zero/frontdoor/interceptor.py) has authorized every call and forwarded it
to the leader when this zero is not the leader, before any method here runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from zero import security
from zero.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError
from zero.leader.leases import Leases
from zero.leader.oracle import Oracle
from zero.pb import state_pb2, zero_pb2, zero_pb2_grpc
from zero.replica.node import ZeroNode
from zero.state import rules, validate, versions
from zero.frontdoor.auth import check_admin
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.oracle_service import READY_TIMEOUT, OracleHub, OracleMethods
from zero.frontdoor.stream import MembershipHub
from zero.frontdoor.wire import Context, len_field

__all__ = ["ZeroService", "require_leader", "MAX_TABLETS_PER_REQUEST", "STREAM_REQUESTS_AHEAD"]

MAX_TABLETS_PER_REQUEST = 10_000
STREAM_REQUESTS_AHEAD = 64  # TimestampStream requests read ahead of their answers, at most
SIZE_CHANGE_RATIO = 0.10  # UpdateTabletSizes proposes only changes above this


def require_leader(node: ZeroNode, what: str) -> None:
    """UNAVAILABLE unless this zero leads: for calls only the leader can answer even when
    they reach it unforwarded (a forwarded call that arrives after leadership moved)."""
    if not node.is_leader:
        lead = node.leader_id
        hint = f"the leader is zero {lead}" if lead else "no leader is known"
        raise UnavailableError(f"{what} are served by the leader and this zero is not it ({hint}); "
                               "retry on the leader (see trailing metadata zero-leader-addr)")


def _placement_ready(node: ZeroNode) -> bool:
    """Whether the cluster runs placement's version (labels, rates) yet."""
    return versions.effective(node.state.cluster_version) >= versions.PROPOSAL_MIN_VERSION["set_placement"]


def _changed_rates(group: zero_pb2.Group, rates: Mapping[str, float], field: str) -> dict[str, float]:
    """The reported rates of this group's tablets that moved by more than SIZE_CHANGE_RATIO
    (a rate that only wobbles is not worth a Raft entry)."""
    out = {}
    for name, rate in rates.items():
        t = group.tablets.get(name)
        if t is None:
            continue
        cur = getattr(t, field)
        if (cur == 0) != (rate == 0) or abs(rate - cur) > SIZE_CHANGE_RATIO * cur:
            out[name] = rate
    return out


class ZeroService(OracleMethods, zero_pb2_grpc.ZeroServicer):
    """The data-node API. Connect, GetState and StreamMembership answer bytes, the
    serialized message their service declares (zero/frontdoor/wire.py: the state is
    serialized once per version for every caller)."""

    def __init__(self, node: ZeroNode, leases: Leases, liveness: Liveness, hub: MembershipHub,
                 oracle: Oracle, oracle_hub: OracleHub, *, admin_token: str | None, replicas: int) -> None:
        self.node = node
        self.oracle = oracle
        self.oracle_hub = oracle_hub
        self.hub = hub
        self.leases = leases
        self.liveness = liveness
        self.admin_token = admin_token
        self.replicas = replicas

    async def Connect(self, request: zero_pb2.ConnectRequest, context: Context) -> bytes:
        """A serialized ConnectResponse."""
        addr = validate.address(request.addr, "addr")
        if request.learner and not request.group_id:
            raise InvalidArgumentError("a learner must name the group it replicates (group_id)")
        rules.check_labels(request.labels)
        # Labels need cluster version 3: during a rolling upgrade a labelled node still
        # joins, unlabelled (its next Connect after the upgrade records them).
        labels = request.labels if _placement_ready(self.node) else {}
        applied = await self.node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(
            id=request.id, addr=addr, group_id=request.group_id, learner=request.learner,
            replicas=self.replicas, labels=labels)))
        member = applied.member
        assert member is not None
        if self.node.is_leader:
            self.liveness.beat(member.id)
        self.liveness.fill(member)
        # ConnectResponse{member = 1, state = 2}, the state shared and serialized once per
        # version (the interceptor passes bytes through).
        return len_field(1, member.SerializeToString()) + len_field(2, self.hub.state_bytes())

    async def Heartbeat(self, request: zero_pb2.HeartbeatRequest, context: Context) -> zero_pb2.HeartbeatResponse:
        node = self.node
        if not request.member_id:
            raise InvalidArgumentError("member_id is 0; connect first to get an id")
        require_leader(node, "heartbeats")
        member = node.state.member(request.member_id)
        if member is None:
            await node.read_barrier()  # a new leader may not have applied the Connect yet
            member = node.state.member(request.member_id)
        if member is None:
            if node.state.is_removed(request.member_id):
                raise FailedPreconditionError(
                    f"member {request.member_id} was removed from the cluster; it must not serve")
            raise NotFoundError(f"member {request.member_id} is unknown; connect first")
        if request.group_id and request.group_id != member.group_id:
            raise FailedPreconditionError(
                f"member {request.member_id} belongs to group {member.group_id}, not {request.group_id}")
        self.liveness.beat(request.member_id, leader=request.leader, min_active_ts=request.min_active_ts)
        return zero_pb2.HeartbeatResponse(version=node.state.version)

    async def ShouldServe(self, request: zero_pb2.Tablet, context: Context) -> zero_pb2.Tablet:
        resp = await self._tablets([request], context)
        return resp[0]

    async def Tablets(self, request: zero_pb2.TabletsRequest, context: Context) -> zero_pb2.TabletsResponse:
        if len(request.tablets) > MAX_TABLETS_PER_REQUEST:
            raise InvalidArgumentError(
                f"{len(request.tablets)} tablets in one request; at most {MAX_TABLETS_PER_REQUEST:,} are allowed")
        return zero_pb2.TabletsResponse(tablets=await self._tablets(list(request.tablets), context))

    async def _tablets(self, tablets: list[zero_pb2.Tablet], context: Context) -> list[zero_pb2.Tablet]:
        """Look up, claim or (admin) force each tablet; answers in request order.

        All input is checked before anything is proposed, so a bad request changes
        nothing. Unowned tablets named with a group are claimed in one proposal."""
        forced = False
        for t in tablets:
            # A claim names a new tablet: the stricter rule. A lookup may name one created
            # before it (an older release's log).
            (validate.new_tablet_name if t.group_id or t.force else validate.tablet_name)(t.predicate)
            if t.force:
                validate.group_id(t.group_id, f"group_id of forced tablet {t.predicate!r}")
                forced = True
        if forced:
            security.require_roles(context, security.FORCE_ROLES, "a forced tablet assignment")
            check_admin(self.admin_token, context.invocation_metadata())
        node = self.node
        if not forced:
            return await self._claim_or_look_up(tablets)
        await node.read_barrier()
        state = node.state
        groups = state.groups
        for t in tablets:
            if t.group_id and t.group_id not in groups and (t.force or not state.group_of(t.predicate)):
                raise NotFoundError(f"group {t.group_id} does not exist (tablet {t.predicate!r})")
        for t in tablets:
            if t.force:
                await node.propose(state_pb2.Proposal(
                    force_tablet=state_pb2.ForceTablet(predicate=t.predicate, group_id=t.group_id)))
        claims = [zero_pb2.Tablet(predicate=t.predicate, group_id=t.group_id)
                  for t in tablets if not t.force and t.group_id and not node.state.group_of(t.predicate)]
        if claims:
            await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=claims)))
        out = []
        for t in tablets:
            owned = node.state.tablet(t.predicate)
            out.append(owned if owned is not None else zero_pb2.Tablet(predicate=t.predicate))
        return out

    async def _claim_or_look_up(self, tablets: list[zero_pb2.Tablet]) -> list[zero_pb2.Tablet]:
        """One round per request: tablets this zero's state does not know as owned and
        that name a group are claimed by one proposal, whose apply decides (it claims the
        unowned, answers the owner of one claimed meanwhile, refuses an unknown group);
        lookups (group 0, or an owned tablet) are linearizable reads. Both run at once."""
        node = self.node
        claims = [zero_pb2.Tablet(predicate=t.predicate, group_id=t.group_id)
                  for t in tablets if t.group_id and not node.state.group_of(t.predicate)]
        answers: dict[str, zero_pb2.Tablet] = {}

        async def claim() -> None:
            applied = await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=claims)))
            answers.update((a.predicate, a) for a in applied.result.tablets.tablets)

        reads = len(claims) < len(tablets)
        await asyncio.gather(*((claim(),) if claims else ()), *((node.read_barrier(),) if reads else ()))
        out = []
        for t in tablets:
            got = answers.get(t.predicate) or node.state.tablet(t.predicate)
            out.append(got if got is not None else zero_pb2.Tablet(predicate=t.predicate))
        return out

    async def UpdateTabletSizes(self, request: zero_pb2.TabletSizes,
                                context: Context) -> zero_pb2.UpdateTabletSizesResponse:
        gid = validate.group_id(request.group_id)
        if len(request.sizes) > MAX_TABLETS_PER_REQUEST:
            raise InvalidArgumentError(
                f"{len(request.sizes)} tablet sizes in one request; at most {MAX_TABLETS_PER_REQUEST:,} are allowed")
        for name, size in request.sizes.items():
            validate.tablet_name(name)
            validate.tablet_size(name, size)
        for rates in (request.read_rates, request.write_rates):
            if len(rates) > MAX_TABLETS_PER_REQUEST:
                raise InvalidArgumentError(f"{len(rates)} tablet rates in one request; "
                                           f"at most {MAX_TABLETS_PER_REQUEST:,} are allowed")
            for name, rate in rates.items():
                validate.tablet_name(name)
                validate.rate(name, rate)
        node = self.node
        await node.read_barrier()
        group = node.state.groups.get(gid)
        if group is None:
            raise NotFoundError(f"group {gid} does not exist")
        changed = {}
        for name, size in request.sizes.items():
            t = group.tablets.get(name)
            if t is None:
                continue  # not this group's tablet (any more): a stale report
            cur = t.size_bytes
            if (cur == 0 and size != 0) or abs(size - cur) > SIZE_CHANGE_RATIO * cur:
                changed[name] = size
        ready = _placement_ready(node)  # rates need cluster version 3; sizes do not
        reads = _changed_rates(group, request.read_rates, "read_rate") if ready else {}
        writes = _changed_rates(group, request.write_rates, "write_rate") if ready else {}
        if changed or reads or writes:
            await node.propose(state_pb2.Proposal(tablet_sizes=zero_pb2.TabletSizes(
                group_id=gid, sizes=changed, read_rates=reads, write_rates=writes)))
        return zero_pb2.UpdateTabletSizesResponse()

    async def AssignIds(self, request: zero_pb2.AssignIdsRequest, context: Context) -> zero_pb2.AssignedIds:
        return await self.leases.assign(request.kind, request.count)

    async def Timestamps(self, request: zero_pb2.TimestampsRequest, context: Context) -> zero_pb2.AssignedIds:
        if request.read_only:
            # The oracle's max_assigned: every commit at or below it is known (no lease).
            # Read after a ReadIndex round begun after the request arrived: a leader
            # deposed without knowing it would answer below a commit the new leader has
            # acknowledged (tests/cluster/test_oracle_stale_leader.py).
            require_leader(self.node, "read-only timestamps")
            await self.oracle.wait_ready(READY_TIMEOUT)
            await self.node.read_barrier()
            ts = self.oracle.max_assigned()
            return zero_pb2.AssignedIds(start_id=ts, end_id=ts)
        return await self.leases.assign(zero_pb2.TIMESTAMP, request.count)

    async def TimestampStream(self, requests: AsyncIterator[zero_pb2.TimestampsRequest],
                              context: Context) -> AsyncIterator[zero_pb2.AssignedIds]:
        """Timestamps over one stream: each request is answered, in order, exactly as a
        unary Timestamps of its count (SPEC semantics 2). A request's ReadIndex round
        starts as soon as it is read, so it begins after the request arrived and requests
        outstanding together share rounds; ranges are handed out in request order. A bad
        count ends the stream with INVALID_ARGUMENT once the requests before it are
        answered; nothing is handed out for it."""
        leases = self.leases
        # Bounded: a client that pipelines without reading answers is not read further
        # (gRPC flow control then holds it back) instead of growing this queue.
        pending: asyncio.Queue[tuple[asyncio.Future[None], int] | BaseException | None] = asyncio.Queue(
            maxsize=STREAM_REQUESTS_AHEAD)

        async def read() -> None:
            try:
                async for req in requests:
                    barrier = leases.begin_timestamps(req.count)
                    try:
                        await pending.put((barrier, req.count))
                    except asyncio.CancelledError:
                        barrier.cancel()  # the stream ended while this one waited for room
                        raise
                await pending.put(None)
            except Exception as e:  # noqa: BLE001 - the stream ends with it, in order
                await pending.put(e)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield await leases.timestamps_after(*item)
        finally:
            reader.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if isinstance(item, tuple):
                    barrier = item[0]
                    if barrier.done() and not barrier.cancelled():
                        barrier.exception()  # retrieved: nobody waits for this round any more
                    barrier.cancel()

    async def GetState(self, request: zero_pb2.GetStateRequest, context: Context) -> bytes:
        """A serialized MembershipState, shared by every caller at the same version."""
        await self.node.read_barrier()
        return self.hub.state_bytes()

    async def StreamMembership(self, request: zero_pb2.StreamMembershipRequest,
                               context: Context) -> AsyncIterator[bytes]:
        """Serialized MembershipUpdates, each serialized once for all watchers."""
        if request.cluster_id:
            validate.cluster_id(request.cluster_id)
        async for update in self.hub.stream(request.since_version, request.cluster_id, serialized=True):
            yield update

