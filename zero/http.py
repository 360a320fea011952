"""The HTTP port: `/health`, `/live`, `/state`, `/metrics` and a status page at `/`.

`health_report` is the single definition of "this zero serves"; the gRPC health service
(zero/app.py) publishes the same answer.
"""

from __future__ import annotations

import html
import time
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from raftcore import StateType

from .errors import ZeroError
from .node import ZeroNode
from .server import Liveness

__all__ = ["make_app", "health_report", "APPLY_LAG_LIMIT"]

APPLY_LAG_LIMIT = 1000  # committed-but-unapplied entries tolerated by /health
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _election_elapsed(node: ZeroNode) -> int | None:
    """Ticks since this follower last heard from its leader. raftcore resets the
    election timer on every message from the leader; ZeroNode does not expose it, so it
    is read from the RawNode (inspection only)."""
    raw = getattr(getattr(node, "_node", None), "rawnode", None)
    raft = getattr(raw, "raft", None)
    value = getattr(raft, "election_elapsed", None)
    return value if isinstance(value, int) else None


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
        elapsed = _election_elapsed(node)
        if elapsed is not None and elapsed >= node.opts.election_ticks:
            reasons.append(f"the leader was not heard from for {elapsed} ticks")
    lag = st.commit - node.applied
    if lag > APPLY_LAG_LIMIT:
        reasons.append(f"applied is {lag} entries behind commit")
    if reasons:
        body["reason"] = "; ".join(reasons)
    return not reasons, body


def make_app(node: ZeroNode, liveness: Liveness) -> web.Application:
    app = web.Application()
    started = time.time()

    async def health(_request: web.Request) -> web.Response:
        ok, body = health_report(node)
        return web.json_response(body, status=200 if ok else 503)

    async def live(_request: web.Request) -> web.Response:
        return web.json_response({"live": True, "raft_id": node.raft_id})

    async def state(_request: web.Request) -> web.Response:
        try:
            await node.read_barrier()
        except ZeroError as e:
            return web.json_response({"error": str(e), "code": e.code}, status=503)
        st = liveness.overlay(node.state.state_copy())
        text = json_format.MessageToJson(st, preserving_proto_field_name=True, indent=None)
        return web.Response(text=text, content_type="application/json")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=node.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=_status_page(node, liveness, started), content_type="text/html")

    app.router.add_get("/health", health)
    app.router.add_get("/live", live)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    return app


def _status_page(node: ZeroNode, liveness: Liveness, started: float) -> str:
    """A server-rendered page from this zero's applied state (not a linearizable read:
    it answers even without a quorum, and says so)."""
    e = html.escape
    ok, h = health_report(node)
    st = liveness.overlay(node.state.state_copy())
    rows = []

    def table(head: list[str], body: list[list[Any]]) -> str:
        if not body:
            return "<p><em>none</em></p>"
        th = "".join(f"<th>{e(c)}</th>" for c in head)
        trs = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in body)
        return f"<table><tr>{th}</tr>{trs}</table>"

    zeros = [[z.id, z.addr, "yes" if z.leader else "", "yes" if z.healthy else "no"]
             for _, z in sorted(st.zeros.items())]
    groups, members, tablets = [], [], []
    for gid, g in sorted(st.groups.items()):
        groups.append([gid, len(g.members), len(g.tablets), sum(t.size_bytes for t in g.tablets.values())])
        for mid, m in sorted(g.members.items()):
            hb = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.last_heartbeat_ms / 1000)) if m.last_heartbeat_ms else "never"
            members.append([mid, gid, m.addr, "learner" if m.learner else "voter", "yes" if m.leader else "",
                            "yes" if m.healthy else "no", hb])
        for name, t in sorted(g.tablets.items()):
            tablets.append([name, gid, t.size_bytes, "read-only" if t.read_only else ""])
    removed = [[m.id, m.group_id or "zero", m.addr] for m in st.removed]
    rows.append("<h2>This zero</h2>" + table(
        ["raft id", "role", "term", "leader", "applied", "commit", "serving", "up since (UTC)"],
        [[h["raft_id"], h["role"], h["term"], h["leader_id"], h["applied"], h["commit"],
          "yes" if ok else f"no: {h.get('reason', '')}",
          time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started))]]))
    rows.append("<h2>Cluster</h2>" + table(
        ["cluster id", "version", "max uid", "max timestamp"],
        [[st.cluster_id or "(not set yet)", st.version, st.max_uid, st.max_txn_ts]]))
    rows.append("<h2>Zeros</h2>" + table(["raft id", "addr", "leader", "healthy"], zeros))
    rows.append("<h2>Groups</h2>" + table(["group", "members", "tablets", "bytes"], groups))
    rows.append("<h2>Members</h2>" + table(
        ["id", "group", "addr", "kind", "leader", "healthy", "last heartbeat (UTC)"], members))
    rows.append("<h2>Tablets</h2>" + table(["tablet", "group", "bytes", ""], tablets))
    if removed:
        rows.append("<h2>Removed</h2>" + table(["id", "group", "addr"], removed))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f4f4f4}")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>zero "
            f"{e(str(node.raft_id))}</title><style>{style}</style></head><body>"
            f"<h1>zero {e(str(node.raft_id))}</h1><p>This zero's applied view of the cluster "
            "(not a linearizable read; <a href=\"/state\">/state</a> is). "
            "<a href=\"/health\">/health</a> · <a href=\"/metrics\">/metrics</a></p>"
            + "".join(rows) + "</body></html>")
