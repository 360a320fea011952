"""The HTTP port: `/health`, `/live`, `/state`, `/metrics` and a status page at `/`, and
Dgraph Zero's verbs (`/assign`, `/moveTablet`, `/removeNode`, `/state?format=dgraph`),
which live in zero/frontdoor/dgraph_http.py and are only registered here.

The status page (zero/static/) is self-contained: `/` embeds the first report and the
page polls `/status.json` (`status_report`) every second to stay live.

`health_report` is the single definition of "this zero serves"; the gRPC health service
(zero/app.py) publishes the same answer.
"""

from __future__ import annotations

import functools
import html
import json
import time
from importlib import resources
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from raftcore import StateType

from zero.errors import ZeroError
from zero.leader.oracle import Oracle
from zero.pb import state_pb2, zero_pb2
from zero.replica.node import ZeroNode
from zero.frontdoor.dgraph_http import CredentialsSource, DgraphVerbs
from zero.frontdoor.liveness import Liveness

__all__ = ["make_app", "health_report", "status_report", "APPLY_LAG_LIMIT"]

APPLY_LAG_LIMIT = 1000  # committed-but-unapplied entries tolerated by /health
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_report(node: ZeroNode) -> tuple[bool, dict[str, Any]]:
    """(serving, body): serving when a leader is known and (leader) a quorum of voters
    was recently active or (follower) the leader was heard from within one election
    timeout, and applied is within APPLY_LAG_LIMIT of commit."""
    body: dict[str, Any] = {"raft_id": node.raft_id, "leader_id": node.leader_id, "role": "UNKNOWN",
                            "term": node.term, "applied": node.applied, "commit": 0,
                            "cluster_id": node.state.cluster_id}
    if node.fatal is not None:
        body["reason"] = f"raft loop stopped: {node.fatal!r}"
        return False, body
    try:
        st = node.raft_status()
    except Exception:
        body["reason"] = "raft is not running"
        return False, body
    body.update(role=st.raft_state.name, term=st.term, commit=st.commit, leader_id=st.lead)
    reasons = []
    if not st.lead:
        reasons.append("no leader is known")
    elif st.raft_state == StateType.LEADER:
        voters = set(st.voters) | set(getattr(st, "voters_outgoing", ()))
        active = sum(1 for v in voters if v == st.id or (v in st.progress and st.progress[v].recent_active))
        body["active_voters"] = active
        if voters and active < len(voters) // 2 + 1:
            reasons.append(f"only {active} of {len(voters)} voters are active: no quorum")
    else:
        # Ticks since this follower last heard from its leader (raftcore resets the
        # election timer on every message from the leader).
        elapsed = node.election_elapsed()
        if elapsed is not None and elapsed >= node.opts.election_ticks:
            reasons.append(f"the leader was not heard from for {elapsed} ticks")
    lag = st.commit - node.applied
    if lag > APPLY_LAG_LIMIT:
        reasons.append(f"applied is {lag} entries behind commit")
    if reasons:
        body["reason"] = "; ".join(reasons)
    return not reasons, body


def make_app(node: ZeroNode, liveness: Liveness, *, admin_token: str | None = None, grpc_addr: str = "",
             grpc_port: int = 0, grpc_creds: CredentialsSource | None = None,
             oracle: Oracle | None = None) -> web.Application:
    """The HTTP app. With `grpc_port` (this zero's gRPC server, bound on `grpc_addr`;
    `grpc_creds` when it uses TLS) it also serves Dgraph's verbs, through that gRPC
    server (zero/frontdoor/dgraph_http.py); `admin_token` is --admin-token."""
    app = web.Application()
    started = time.time()
    dgraph = (DgraphVerbs(node, admin_token=admin_token, grpc_addr=grpc_addr, grpc_port=grpc_port, creds=grpc_creds)
              if grpc_port else None)

    async def health(_request: web.Request) -> web.Response:
        ok, body = health_report(node)
        return web.json_response(body, status=200 if ok else 503)

    async def live(_request: web.Request) -> web.Response:
        return web.json_response({"live": True, "raft_id": node.raft_id})

    async def state(request: web.Request) -> web.Response:
        fmt = request.query.get("format", "")
        if fmt == "dgraph" and dgraph is not None:
            return await dgraph.state(request)
        if fmt:
            known = "leave it out (proto3 JSON)"
            if dgraph is not None:
                known += " or ask for format=dgraph (Dgraph Zero's JSON)"
            return web.json_response({"error": f"unknown format {fmt[:40]!r}: {known}", "code": "INVALID_ARGUMENT"},
                                     status=400)
        try:
            await node.read_barrier()
        except ZeroError as e:
            return web.json_response({"error": str(e), "code": e.code}, status=503)
        st = liveness.overlay(node.state.state_copy())
        text = json_format.MessageToJson(st, preserving_proto_field_name=True, indent=None)
        return web.Response(text=text, content_type="application/json")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=node.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def status_json(_request: web.Request) -> web.Response:
        return web.json_response(status_report(node, liveness, started, oracle), headers=_NO_STORE)

    async def index(_request: web.Request) -> web.Response:
        # The first report is embedded, so the page shows the cluster before the first
        # poll and reads (as text) without JavaScript. "<" is escaped: the JSON cannot
        # close its <script> element.
        initial = json.dumps(status_report(node, liveness, started, oracle), separators=(",", ":")).replace("<", "\\u003c")
        page = _static_text("index.html").replace("{{title}}", html.escape(f"zero {node.raft_id}")) \
                                         .replace("{{initial}}", initial)
        return web.Response(text=page, content_type="text/html", headers={**_NO_STORE, **_PAGE_HEADERS})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = _STATIC_TYPES.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        return web.Response(text=_static_text(name), content_type=kind, headers=_PAGE_HEADERS)

    app.router.add_get("/health", health)
    app.router.add_get("/live", live)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/static/{name}", static)
    async def favicon(_request: web.Request) -> web.Response:
        # The page names /static/favicon.svg; a browser (or anything else) asking for the
        # conventional /favicon.ico gets "nothing here" without a 404 in its console.
        return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    if dgraph is not None:
        dgraph.register(app)
    return app


# -- the status page ------------------------------------------------------------------------------
# The page's assets ship inside the package (zero/static/); nothing is fetched from
# elsewhere, and the CSP says so to the browser.
_STATIC_TYPES = {"index.html": "text/html", "app.js": "application/javascript", "style.css": "text/css",
                 "favicon.svg": "image/svg+xml"}
_NO_STORE = {"Cache-Control": "no-store"}
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                            "base-uri 'none'; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_TABLETS = 200  # tablets listed per group (the largest); the rest are counted
PAGE_MOVES = 8  # finished moves listed
PAGE_LEADER_CHANGES = 12


@functools.lru_cache(maxsize=None)
def _static_text(name: str) -> str:
    return resources.files("zero").joinpath("static", name).read_text(encoding="utf-8")


def _peer_window(node: ZeroNode) -> float:
    """Seconds without a message from a peer after which the page calls it unhealthy:
    two election timeouts (CheckQuorum's period), at least one second."""
    return max(1.0, 2 * node.opts.election_timeout)


def _zero_rows(node: ZeroNode, st: zero_pb2.MembershipState, ok: bool, h: dict[str, Any]) -> list[dict[str, Any]]:
    """Every zero with role, term, index and health, as far as this zero can know: the
    leader hears from every peer (its transport's last admitted batch and Raft's
    progress); a follower hears only from the leader, so other followers are "unknown"."""
    try:
        rs = node.raft_status()
    except Exception:
        rs = None
    leading = rs is not None and rs.raft_state == StateType.LEADER
    window = _peer_window(node)
    transport = node.transport
    learners = set(rs.learners) if rs is not None else set()
    rows = []
    for zid, z in sorted(st.zeros.items()):
        row: dict[str, Any] = {"id": zid, "addr": z.addr, "leader": zid == h["leader_id"], "self": zid == node.raft_id,
                               "learner": zid in learners, "term": None, "applied": None, "match": None,
                               "health": "unknown", "role": "LEARNER" if zid in learners else "FOLLOWER"}
        if zid == h["leader_id"]:
            row["role"] = "LEADER"
        if zid == node.raft_id:
            row.update(role=h["role"], term=h["term"], applied=h["applied"], commit=h["commit"],
                       health="healthy" if ok else "unhealthy")
            if not ok:
                row["reason"] = h.get("reason", "")
        elif leading:
            pr = rs.progress.get(zid) if rs is not None else None
            alive = transport.heard_within(zid, window) and not transport.peer_down(zid)
            row.update(health="healthy" if alive else "unhealthy", match=pr.match if pr is not None else None,
                       term=h["term"] if alive else None)
            if pr is not None:
                row["recent_active"] = pr.recent_active
        elif zid == h["leader_id"]:
            alive = transport.heard_within(zid, window)
            row.update(health="healthy" if alive else "unhealthy", term=h["term"] if alive else None)
        rows.append(row)
    return rows


def _move_dict(m: state_pb2.MoveRecord) -> dict[str, Any]:
    phase = state_pb2.MovePhase.Name(m.phase).removeprefix("MOVE_")
    return {"move_id": m.move_id, "tablet": m.predicate, "src_group": m.src_group, "dst_group": m.dst_group,
            "phase": phase, "started_index": m.started_index, "finished_index": m.finished_index,
            "abort_reason": m.abort_reason}


def _leader_changes(node: ZeroNode) -> list[dict[str, Any]]:
    """The leader changes this zero saw, newest first, each with the term the new leader
    leads in (zero/replica/leadership.py; a lost leader, 0, with the term it was lost in)."""
    return [{"time_ms": int(t * 1000), "term": term, "leader": lead}
            for t, term, lead in reversed(node.leader_changes[-PAGE_LEADER_CHANGES:])]


def _oracle_dict(o: zero_pb2.OracleStatus) -> dict[str, Any]:
    return {"serving": o.serving, "max_assigned": o.max_assigned, "safe_ts": o.safe_ts, "commits": o.commits,
            "aborts": dict(sorted(o.aborts.items())), "pending": o.pending, "conflict_keys": o.conflict_keys,
            "decisions": o.decisions}


def status_report(node: ZeroNode, liveness: Liveness, started: float, oracle: Oracle | None = None) -> dict[str, Any]:
    """What the status page shows: this zero's applied view of the cluster (not a
    linearizable read, so it answers without a quorum too, and says whose view it is).
    Data-node liveness lives on the leader only; a follower reports it as unknown."""
    ok, h = health_report(node)
    st = liveness.overlay(node.state.state_copy())
    leading = h["role"] == StateType.LEADER.name
    active = node.state.active_move()
    groups = []
    for gid, g in sorted(st.groups.items()):
        members = [{"id": mid, "addr": m.addr, "leader": m.leader if leading else False, "learner": m.learner,
                    "health": ("healthy" if m.healthy else "unhealthy") if leading else "unknown",
                    "last_heartbeat_ms": m.last_heartbeat_ms if leading else 0}
                   for mid, m in sorted(g.members.items())]
        tablets = sorted(g.tablets.values(), key=lambda t: (-t.size_bytes, t.predicate))
        groups.append({
            "id": gid, "members": members, "tablet_count": len(tablets),
            "size_bytes": sum(t.size_bytes for t in tablets),
            "tablets": [{"name": t.predicate, "size_bytes": t.size_bytes, "read_only": t.read_only,
                         "moving": active is not None and active.predicate == t.predicate}
                        for t in tablets[:PAGE_TABLETS]]})
    recent = [m for m in node.state.moves() if active is None or m.move_id != active.move_id]
    return {
        "generated_ms": int(time.time() * 1000),
        "self": {**h, "serving": ok, "started_ms": int(started * 1000)},
        "view": "leader" if leading else "follower",
        "cluster": {"cluster_id": st.cluster_id, "version": st.version, "leader_id": h["leader_id"],
                    "max_uid": st.max_uid, "max_txn_ts": st.max_txn_ts,
                    "rebalance_enabled": node.state.rebalance_enabled},
        "zeros": _zero_rows(node, st, ok, h),
        "groups": groups,
        "moves": {"active": _move_dict(active) if active is not None else None,
                  "recent": [_move_dict(m) for m in reversed(recent[-PAGE_MOVES:])]},
        "oracle": _oracle_dict(oracle.report()) if oracle is not None else None,
        "leader_changes": _leader_changes(node),
        "removed": [{"id": m.id, "group_id": m.group_id, "addr": m.addr} for m in st.removed],
    }
