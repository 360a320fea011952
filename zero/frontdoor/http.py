"""The HTTP port: `/health`, `/live`, `/state`, `/metrics` and a status page at `/`, and
Dgraph Zero's verbs (`/assign`, `/moveTablet`, `/removeNode`, `/state?format=dgraph`),
which live in zero/frontdoor/dgraph_http.py and are only registered here.

The status page (zero/static/) is self-contained: `/` embeds the first report and the
page polls `/status.json` (zero/frontdoor/status.py) every second to stay live, with its
paging and search in the query.

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
from zero.replica.node import ZeroNode
from zero.frontdoor.dgraph_http import CredentialsSource, DgraphVerbs
from zero.frontdoor.liveness import Liveness
from zero.frontdoor.status import StatusQuery, status_report
from zero.ops.state_summary import Summaries

__all__ = ["make_app", "health_report", "APPLY_LAG_LIMIT"]

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

    summaries = Summaries(time.monotonic)  # per-group totals, reused between polls of a large state

    async def status_json(request: web.Request) -> web.Response:
        try:
            q = StatusQuery.parse(request.query)
        except ZeroError as e:
            return web.json_response({"error": str(e), "code": e.code}, status=400, headers=_NO_STORE)
        return web.json_response(status_report(node, liveness, started, health_report(node), oracle, q, summaries),
                                 headers=_NO_STORE)

    async def index(_request: web.Request) -> web.Response:
        # The first report is embedded, so the page shows the cluster before the first
        # poll and reads (as text) without JavaScript. "<" is escaped: the JSON cannot
        # close its <script> element.
        report = status_report(node, liveness, started, health_report(node), oracle, None, summaries)
        initial = json.dumps(report, separators=(",", ":")).replace("<", "\\u003c")
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


@functools.lru_cache(maxsize=None)
def _static_text(name: str) -> str:
    return resources.files("zero").joinpath("static", name).read_text(encoding="utf-8")
