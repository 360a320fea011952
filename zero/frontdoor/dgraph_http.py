"""Dgraph Zero's HTTP verbs on zero's HTTP port, so the requests in Dgraph's docs and
runbooks work against zero unchanged:

    GET /assign?what=uids&num=100          {"startId":"1","endId":"100","readOnly":"0"}
    GET /assign?what=timestamps&num=100    the same shape, from the timestamp counter
    GET /moveTablet?tablet=name&group=2    text: namespace: 0. Predicate: [name] moved from group [1] to [2]
    GET /removeNode?id=3&group=2           text: Removed node with group: 2, idx: 3  (group=0: a zero)
    GET /state?format=dgraph               the state in Dgraph's JSON (`dgraph_state`)

The shapes are Dgraph v25's (dgraph/cmd/zero/http.go, admin.go, protos/pb.proto,
x/x.go SetStatus): answers are proto3 JSON (protojson, unpopulated fields included) with
Dgraph's camelCase names, 64-bit numbers as strings; errors are
`{"errors":[{"message":"...","extensions":{"code":"ErrorInvalidRequest"}}]}`.

Design: each verb is one call of zero's own gRPC API (`Zero.AssignIds`, `Zero.Timestamps`,
`ZeroAdmin.MoveTablet`, `ZeroAdmin.RemoveNode`, `Zero.GetState`) on this zero's own gRPC
port, the call `zero admin` makes. Everything behind the RPC is then shared, not copied:
the Interceptor's admin-token check, its forwarding from a follower to the leader (one
hop, UNAVAILABLE with no leader), its TLS role check and error mapping, the metrics, and
the servicers' validation and business logic (Leases.assign, MoveDriver.move,
remove_zero). Calling the servicer objects directly would skip the interceptor, so a
follower would need a second forwarding path; dialling the leader directly would copy
the interceptor's choice of leader and its checks. What stays here is HTTP: parsing
the query, the token headers, and translating answers and statuses into Dgraph's JSON.

Auth: with `--admin-token` set, /assign, /moveTablet and /removeNode need it, in Dgraph's
`X-Dgraph-AuthToken: <token>` header or `Authorization: Bearer <token>`: missing is 401,
wrong is 403 (Dgraph v25 guards /removeNode and /moveTablet always and /assign once a
token is configured). Without a token they are open, as ZeroAdmin is over gRPC, except
with `--tls-dir`: the HTTP port has no client certificates, so it would be a way around
them; there they are refused (403) until a token is set. `/state?format=dgraph`, like
`/state`, is a read and stays open.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc
from aiohttp import web

from zero.errors import PermissionDeniedError, UnauthenticatedError, ZeroError
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.replica.node import ZeroNode
from zero.rpc import RECONNECT_OPTIONS
from zero.frontdoor.auth import check_admin
from zero.frontdoor.wire import MAX_MESSAGE_BYTES

__all__ = ["DgraphVerbs", "dgraph_state", "error_body", "PATHS"]

PATHS = ("/assign", "/moveTablet", "/removeNode")
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1
CALL_TIMEOUT = 30.0  # seconds, as Dgraph's /assign
STATE_TIMEOUT = 10.0  # as Dgraph's /state
# A move runs to its end on the leader (bounded there by --move-timeout and the rollback);
# the request waits for the outcome, as Dgraph's does. The deadline also travels with the
# forwarded call (a follower's hop would otherwise give up after 30 s).
MOVE_TIMEOUT = 3600.0
LOG_INTERVAL = 60.0  # seconds between log lines for one repeating refusal

# Dgraph's error codes (x/x.go) and the HTTP status for each gRPC status zero answers.
_STATUS: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "ErrorInvalidRequest"),
    grpc.StatusCode.NOT_FOUND: (400, "ErrorInvalidRequest"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "ErrorInvalidRequest"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "ErrorInvalidRequest"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "ErrorInvalidRequest"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "ErrorUnauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "ErrorUnauthorized"),
    grpc.StatusCode.UNAVAILABLE: (503, "Error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "Error"),
    grpc.StatusCode.CANCELLED: (503, "Error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "Error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "Error"),
}
_NUMBER = re.compile(r"0|[1-9][0-9]*|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+", re.ASCII)


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_body(message: str, code: str = "Error") -> dict[str, Any]:
    """Dgraph's error JSON (x.SetStatus)."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(message, code), status=status, headers=headers)


def _uint(query: Mapping[str, str], name: str, limit: int = UINT64_MAX) -> int:
    """A query parameter as Dgraph's intFromQueryParam reads it (decimal, or 0x/0o/0b),
    within [0, limit]. Leading zeros are refused: Go would read "010" as octal."""
    raw = query.get(name, "")
    if not raw:
        raise _HttpError(400, "ErrorInvalidRequest", f"{name} not passed")
    if not _NUMBER.fullmatch(raw) or int(raw, 0) > limit:
        raise _HttpError(400, "ErrorInvalidRequest",
                         f"Error while parsing {name}: {raw[:40]!r} is not an integer between 0 and {limit}")
    return int(raw, 0)


# -- /state?format=dgraph -------------------------------------------------------------------------
def _member(m: zero_pb2.Member, *, dead: bool = False) -> dict[str, Any]:
    # pb.Member: id is fixed64 and lastUpdate uint64 (strings in proto3 JSON); lastUpdate
    # is in seconds, as Dgraph's zero stamps it (time.Now().Unix()).
    return {"id": str(m.id), "groupId": m.group_id, "addr": m.addr, "leader": m.leader, "amDead": dead,
            "lastUpdate": str(m.last_heartbeat_ms // 1000), "learner": m.learner,
            "clusterInfoOnly": False, "forceGroupId": False}


def _tablet(t: zero_pb2.Tablet) -> dict[str, Any]:
    return {"groupId": t.group_id, "predicate": t.predicate, "force": t.force, "onDiskBytes": str(t.size_bytes),
            "remove": False, "readOnly": t.read_only, "moveTs": str(t.move_ts), "uncompressedBytes": "0"}


def dgraph_state(st: zero_pb2.MembershipState) -> dict[str, Any]:
    """zero's MembershipState in Dgraph's shape (pb.MembershipState as Dgraph's /state
    prints it): `counter` is zero's version; tablet `onDiskBytes` its size_bytes; member
    `lastUpdate` the last heartbeat in unix seconds; `maxRaftId` the highest zero id ever
    used; fields zero has no notion of (namespaces, snapshot timestamps, checksums,
    uncompressed sizes) are Dgraph's zero values. Map keys are sorted, as protojson's."""
    zero_ids = [*st.zeros, *(m.id for m in st.removed if not m.group_id)]
    return {
        "counter": str(st.version),
        "groups": {str(gid): {
            "members": {str(mid): _member(g.members[mid]) for mid in sorted(g.members)},
            "tablets": {name: _tablet(g.tablets[name]) for name in sorted(g.tablets)},
            "snapshotTs": "0", "checksum": "0", "checkpointTs": "0",
        } for gid, g in sorted(st.groups.items())},
        "zeros": {str(zid): _member(st.zeros[zid]) for zid in sorted(st.zeros)},
        "maxUID": str(st.max_uid),
        "maxTxnTs": str(st.max_txn_ts),
        "maxNsID": "0",
        "maxRaftId": str(max(zero_ids, default=0)),
        "removed": [_member(m, dead=True) for m in st.removed],
        "cid": st.cluster_id,
    }


# -- the verbs ------------------------------------------------------------------------------------
class CredentialsSource(Protocol):
    """Where the current client credentials are (zero/security/outbound.py's OutboundTls)."""

    @property
    def credentials(self) -> grpc.ChannelCredentials | None: ...


class DgraphVerbs:
    """The handlers; `register` adds /assign, /moveTablet and /removeNode to an app, and
    zero/frontdoor/http.py's /state calls `state` for `?format=dgraph`.

    `grpc_addr` is the address the gRPC server was bound to (`--grpc-addr`) and
    `grpc_port` its port; with `creds` (TLS) this zero is dialled at its advertised
    address (`--my`, which its certificate names, as its peers dial it), else on the
    bound address (loopback for a wildcard)."""

    def __init__(self, node: ZeroNode, *, admin_token: str | None, grpc_addr: str, grpc_port: int,
                 creds: CredentialsSource | None = None) -> None:
        self.node = node
        self.admin_token = admin_token
        self._tls = creds
        host = grpc_addr.rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        self._local = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
        self._channels: dict[tuple[str, int], grpc.aio.Channel] = {}  # (target, id of the credentials)
        self._logged: dict[tuple[str, str], float] = {}

    @property
    def creds(self) -> grpc.ChannelCredentials | None:
        """The credentials current now (reloaded certificates give new ones: a channel
        keeps those it was made with, so a new one is dialled; the old close at cleanup)."""
        return self._tls.credentials if self._tls is not None else None

    def register(self, app: web.Application) -> None:
        for path, handler in zip(PATHS, (self.assign, self.move_tablet, self.remove_node)):
            app.router.add_route("*", path, self._guard(handler))
        app.on_cleanup.append(self._close)

    # -- plumbing -------------------------------------------------------------------------------
    def _target(self) -> str:
        if self.creds is not None:
            me = self.node.state.zeros.get(self.node.raft_id)
            if me is not None and me.addr:
                return me.addr
        return self._local

    def _channel(self) -> grpc.aio.Channel:
        target = self._target()
        key = (target, id(self.creds))
        ch = self._channels.get(key)
        if ch is None:
            opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *RECONNECT_OPTIONS]
            ch = (grpc.aio.secure_channel(target, self.creds, options=opts) if self.creds is not None
                  else grpc.aio.insecure_channel(target, options=opts))
            self._channels[key] = ch
        return ch

    async def _close(self, _app: web.Application) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def _zero(self) -> zero_pb2_grpc.ZeroStub:
        return zero_pb2_grpc.ZeroStub(self._channel())

    def _admin(self) -> zero_pb2_grpc.ZeroAdminStub:
        return zero_pb2_grpc.ZeroAdminStub(self._channel())

    def _authorize(self, request: web.Request) -> list[tuple[str, str]]:
        """The metadata that carries the caller's token to the gRPC call (where the
        interceptor checks it again, on ZeroAdmin); raises unless the token is right."""
        token = request.headers.get("X-Dgraph-AuthToken", "").strip()
        auth = request.headers.get("Authorization", "").strip()
        md = [("authorization", f"Bearer {token}")] if token else [("authorization", auth)] if auth else []
        if self.creds is not None and not self.admin_token:
            raise PermissionDeniedError(
                f"{request.path} over HTTP is disabled on a zero with --tls-dir and no --admin-token: the HTTP "
                "port has no client certificates; set --admin-token, or use zero admin over gRPC")
        try:
            check_admin(self.admin_token, md)
        except UnauthenticatedError:
            raise UnauthenticatedError(
                f"{request.path} needs the admin token: send the header 'X-Dgraph-AuthToken: <token>' "
                "(or 'Authorization: Bearer <token>')") from None
        return md

    def _guard(self, handler: Callable[[web.Request, list[tuple[str, str]]], Awaitable[web.Response]]
               ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """GET only (a HEAD or POST must not lease ids or move tablets), the token, and
        every failure as Dgraph's error JSON."""
        async def guarded(request: web.Request) -> web.Response:
            if request.method != "GET":
                return _error(405, "ErrorInvalidMethod", f"Invalid method {request.method}: {request.path} takes GET",
                              headers={"Allow": "GET"})
            try:
                md = self._authorize(request)
                return await handler(request, md)
            except _HttpError as e:
                return _error(e.status, e.code, str(e))
            except ZeroError as e:
                status, code = _STATUS.get(getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN), (500, "Error"))
                if status in (401, 403):
                    self._log_refusal(request, str(e))
                return _error(status, code, str(e))
            except grpc.aio.AioRpcError as e:
                return self._rpc_error(e)
        return guarded

    def _rpc_error(self, e: grpc.aio.AioRpcError) -> web.Response:
        status, code = _STATUS.get(e.code(), (500, "Error"))
        return _error(status, code, e.details() or e.code().name)

    def _log_refusal(self, request: web.Request, reason: str) -> None:
        # Once per path and reason a minute; never the token itself.
        key, now = (request.path, reason), time.monotonic()
        if len(self._logged) > 1000:
            self._logged.clear()
        if now - self._logged.get(key, -LOG_INTERVAL) >= LOG_INTERVAL:
            self._logged[key] = now
            self.node.log.warning("HTTP request refused: not authorized", path=request.path, error=reason,
                                  peer=request.remote or "")

    # -- the verbs --------------------------------------------------------------------------------
    async def assign(self, request: web.Request, md: list[tuple[str, str]]) -> web.Response:
        num = _uint(request.query, "num")
        what = request.query.get("what", "")
        if what == "uids":
            ids = await self._zero().AssignIds(zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=num),
                                               timeout=CALL_TIMEOUT, metadata=md)
        elif what == "timestamps":
            ids = await self._zero().Timestamps(zero_pb2.TimestampsRequest(count=num), timeout=CALL_TIMEOUT,
                                                metadata=md)
        else:
            raise _HttpError(400, "ErrorInvalidRequest",
                             f"Invalid what: [{what[:40]}]. Must be one of: [uids, timestamps]")
        # pb.AssignedIds in protojson: uint64s as strings; readOnly is for Dgraph's num=0
        # read-only timestamp, which zero does not hand out (num must be 1..1,000,000).
        return web.json_response({"startId": str(ids.start_id), "endId": str(ids.end_id), "readOnly": "0"})

    async def move_tablet(self, request: web.Request, md: list[tuple[str, str]]) -> web.Response:
        if request.query.get("namespace", "").strip() and _uint(request.query, "namespace") != 0:
            raise _HttpError(400, "ErrorInvalidRequest", "Invalid namespace in query parameter: zero has no "
                             "namespaces; leave it out or pass 0")
        tablet = request.query.get("tablet", "")
        if not tablet:
            raise _HttpError(400, "ErrorInvalidRequest", "tablet is a mandatory query parameter")
        try:
            dst = _uint(request.query, "group", UINT32_MAX)
        except _HttpError as e:
            raise _HttpError(400, "ErrorInvalidRequest",
                             f"Query parameter 'group' should contain a valid integer ({e}).") from None
        # The owner before the move, for Dgraph's answer text (the move checks it again).
        before = await self._zero().ShouldServe(zero_pb2.Tablet(predicate=tablet), timeout=CALL_TIMEOUT, metadata=md)
        r = await self._admin().MoveTablet(zero_pb2.MoveTabletRequest(predicate=tablet, dst_group=dst),
                                           timeout=MOVE_TIMEOUT, metadata=md)
        if not r.committed:
            raise _HttpError(500, "Error", f"namespace: 0. Predicate: [{tablet}] was not moved from group "
                             f"[{before.group_id}] to [{dst}]: {r.message}")
        return web.Response(text=f"namespace: 0. Predicate: [{tablet}] moved from group [{before.group_id}] "
                                 f"to [{dst}]")

    async def remove_node(self, request: web.Request, md: list[tuple[str, str]]) -> web.Response:
        node_id = _uint(request.query, "id")
        group = _uint(request.query, "group", UINT32_MAX)
        await self._admin().RemoveNode(zero_pb2.RemoveNodeRequest(node_id=node_id, group_id=group),
                                       timeout=CALL_TIMEOUT, metadata=md)
        return web.Response(text=f"Removed node with group: {group}, idx: {node_id}")

    async def state(self, request: web.Request) -> web.Response:
        """`/state?format=dgraph`: GetState, read linearizably on the leader (forwarded
        there from a follower, so members' liveness is the leader's), in Dgraph's JSON."""
        try:
            st = await self._zero().GetState(zero_pb2.GetStateRequest(), timeout=STATE_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            return self._rpc_error(e)
        return web.json_response(dgraph_state(st))
