"""What the status page shows (`/status.json`, embedded in `/` at load): this zero's
applied view of the cluster, summarized so that it stays a few hundred kilobytes at
10,000 groups and 1,000,000 tablets (issue 23 goal 4):

- totals (groups, members, tablets, bytes) and a page of groups, largest first
  (`groups_offset`, `groups_limit`), each with its members and its largest tablets;
- one group (`group=G`) with its tablets a page at a time (`tablet_offset`, `tablet_limit`);
- the tablets whose names contain a text (`tablet=TEXT`), with their groups.

Not a linearizable read, so it answers without a quorum too, and says whose view it is.
Data-node liveness lives on the leader only; a follower reports it as unknown. Nothing
here copies the whole state: groups are read from the live map (read-only), members'
liveness is filled in on copies of the members shown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftcore import StateType

from zero.errors import InvalidArgumentError
from zero.leader.oracle import Oracle
from zero.ops import state_summary
from zero.pb import state_pb2, zero_pb2
from zero.state import moves
from zero.replica.node import ZeroNode
from zero.frontdoor.liveness import Liveness

__all__ = ["StatusQuery", "status_report", "PAGE_GROUPS", "PAGE_TABLETS", "GROUP_TABLETS", "MATCHES"]

PAGE_GROUPS = 24     # groups on a page (largest first)
PAGE_TABLETS = 12    # tablets shown per group on the overview (the largest)
GROUP_TABLETS = 200  # tablets on a page of one group
MATCHES = 50         # tablets listed for a search
MAX_LIMIT = 1000
PAGE_MOVES = 8       # finished moves listed
PAGE_LEADER_CHANGES = 12
SEARCH_MAX = 200     # characters of a search text


@dataclass(frozen=True, slots=True)
class StatusQuery:
    groups_offset: int = 0
    groups_limit: int = PAGE_GROUPS
    group: int = 0
    tablet_offset: int = 0
    tablet_limit: int = GROUP_TABLETS
    tablet: str = ""

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> StatusQuery:
        """From the URL's query; a bad value is an InvalidArgumentError naming it."""
        unknown = sorted(set(q) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidArgumentError(f"unknown parameter {unknown[0][:40]!r}; known: "
                                       + ", ".join(cls.__dataclass_fields__))
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = q.get(name)
            if raw is None or raw == "":
                return default
            try:
                v = int(raw)
            except ValueError:
                raise InvalidArgumentError(f"{name} must be a whole number, not {raw[:40]!r}") from None
            if not low <= v <= high:
                raise InvalidArgumentError(f"{name} must be between {low} and {high}, not {v}")
            return v
        text = q.get("tablet", "")
        if len(text) > SEARCH_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise InvalidArgumentError(f"tablet must be at most {SEARCH_MAX} characters, none of them control characters")
        return cls(number("groups_offset", 0, 0, 1 << 32), number("groups_limit", PAGE_GROUPS, 1, MAX_LIMIT),
                   number("group", 0, 0, (1 << 32) - 1), number("tablet_offset", 0, 0, 1 << 32),
                   number("tablet_limit", GROUP_TABLETS, 1, MAX_LIMIT), text)


def _peer_window(node: ZeroNode) -> float:
    """Seconds without a message from a peer after which the page calls it unhealthy:
    two election timeouts (CheckQuorum's period), at least one second."""
    return max(1.0, 2 * node.opts.election_timeout)


def _zero_rows(node: ZeroNode, zeros: Mapping[int, zero_pb2.Member], ok: bool, h: dict[str, Any]) -> list[dict[str, Any]]:
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
    for zid, z in sorted(zeros.items()):
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
    phase = moves.phase_name(m)  # as GetMoves and `zero admin moves` name it (SPEC)
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
            "decisions": o.decisions, "purged_below": o.purged_below}


def _tablet_dict(t: zero_pb2.Tablet, active: state_pb2.MoveRecord | None) -> dict[str, Any]:
    return {"name": t.predicate, "group_id": t.group_id, "size_bytes": t.size_bytes, "read_only": t.read_only,
            "moving": active is not None and active.predicate == t.predicate}


def _group_dict(gid: int, g: zero_pb2.Group, active: state_pb2.MoveRecord | None, size: int,
                tablets: list[zero_pb2.Tablet], liveness: Liveness, leading: bool) -> dict[str, Any]:
    members = []
    for mid in sorted(g.members):
        m = zero_pb2.Member()
        m.CopyFrom(g.members[mid])
        liveness.fill(m)
        members.append({"id": mid, "addr": m.addr, "leader": m.leader if leading else False, "learner": m.learner,
                        "health": ("healthy" if m.healthy else "unhealthy") if leading else "unknown",
                        "last_heartbeat_ms": m.last_heartbeat_ms if leading else 0,
                        "labels": dict(sorted(m.labels.items()))})
    return {"id": gid, "members": members, "tablet_count": len(g.tablets), "size_bytes": size,
            "tablets": [_tablet_dict(t, active) for t in tablets]}


def status_report(node: ZeroNode, liveness: Liveness, started: float, health: tuple[bool, dict[str, Any]],
                  oracle: Oracle | None = None, query: StatusQuery | None = None,
                  summaries: state_summary.Summaries | None = None) -> dict[str, Any]:
    """The page's report; `health` is health_report(node) (zero/frontdoor/http.py)."""
    q = query or StatusQuery()
    ok, h = health
    state = node.state
    live = state.view  # read-only
    groups = live.groups
    leading = h["role"] == StateType.LEADER.name
    active = state.active_move()
    sums = summaries or state_summary.Summaries(time.monotonic)
    per_group, totals_version = sums.get(groups, live.version)
    all_totals = state_summary.totals(per_group)
    page = []
    for s in state_summary.page_of_groups(per_group, q.groups_offset, q.groups_limit):
        if s.id in groups:  # totals may be a moment older than the groups
            g = groups[s.id]
            page.append(_group_dict(s.id, g, active, s.size_bytes, state_summary.largest_tablets(g, PAGE_TABLETS),
                                    liveness, leading))
    report: dict[str, Any] = {
        "generated_ms": int(time.time() * 1000),
        "self": {**h, "serving": ok, "started_ms": int(started * 1000)},
        "view": "leader" if leading else "follower",
        "cluster": {"cluster_id": live.cluster_id, "version": live.version, "leader_id": h["leader_id"],
                    "max_uid": live.max_uid, "max_txn_ts": live.max_txn_ts,
                    "rebalance_enabled": state.rebalance_enabled},
        "totals": {"groups": all_totals.groups, "members": all_totals.members, "tablets": all_totals.tablets,
                   "size_bytes": all_totals.size_bytes, "as_of_version": totals_version},
        "zeros": _zero_rows(node, live.zeros, ok, h),
        "groups": page,
        "groups_page": {"offset": q.groups_offset, "limit": q.groups_limit, "total": len(per_group)},
        "moves": {"active": _move_dict(active) if active is not None else None,
                  "recent": [_move_dict(m) for m in reversed([m for m in state.moves()
                                                              if active is None or m.move_id != active.move_id]
                                                             [-PAGE_MOVES:])]},
        "oracle": _oracle_dict(oracle.report()) if oracle is not None else None,
        "leader_changes": _leader_changes(node),
        "removed": [{"id": m.id, "group_id": m.group_id, "addr": m.addr} for m in live.removed],
    }
    if q.group:
        if q.group not in groups:
            report["group"] = None
        else:
            g = groups[q.group]
            tablets = state_summary.tablet_page(g, q.tablet_offset, q.tablet_limit)
            one = _group_dict(q.group, g, active, sum(t.size_bytes for t in g.tablets.values()), tablets,
                              liveness, leading)
            report["group"] = {**one, "tablet_offset": q.tablet_offset, "tablet_limit": q.tablet_limit}
    if q.tablet:
        found, count = state_summary.find_tablets(groups, q.tablet, MATCHES)
        report["search"] = {"text": q.tablet, "count": count, "tablets": [_tablet_dict(t, active) for t in found]}
    return report
