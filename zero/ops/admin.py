"""`zero admin <verb> --addr HOST:PORT`: the operator's CLI over the ZeroAdmin and Zero
services (SPEC "Processes, ports, CLI").

Human output by default, `--json` for machines. Exit codes: 0 ok, 1 refused (zero
answered with an error, or this side could not finish: an --out that cannot be written,
a damaged backup), 2 usage, 3 unreachable (no answer, or no leader/quorum).

--addr is HOST:PORT with a host and a port 1..65535 (the same rule as `zero run`'s
addresses: no default port, no bare ":PORT"); anything else is a usage error before any
connection is tried.

With --json the result is one JSON document on stdout, in proto3 JSON's conventions
(field names as in the .proto files, 64-bit integers as strings), and an error is one
JSON object on stderr, `{"error": MESSAGE, "code": CODE}`, with the same exit codes.
CODE is the gRPC status name when zero (or gRPC) answered with an error (NOT_FOUND,
UNAUTHENTICATED, UNAVAILABLE, ...), "USAGE" for a usage error (exit 2), "UNREACHABLE"
when an answer broke off (exit 3) and "FAILED" when this side failed (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from zero.ops import backup, moves_verbs, placement_verbs, state_summary
from zero.ops.state_text import StateView, state_text
from zero.state.chunks import copy_header
from zero.state import validate
from zero.errors import InvalidArgumentError
from zero.pb import zero_pb2, zero_pb2_grpc
from zero.security import TlsError, load_tls

__all__ = ["add_admin_parser", "run_admin", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "EXIT_UNREACHABLE"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
Metadata = list[tuple[str, str]] | None  # the admin token, when there is one
_UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _json_usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """argparse's error() for `zero admin ... --json`: the usage error as a JSON object."""
    sys.stderr.write(json.dumps({"error": f"{parser.prog}: {message}", "code": "USAGE"}) + "\n")
    sys.exit(EXIT_USAGE)


def add_admin_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], *,
                     json_errors: bool = False) -> None:
    """`zero admin` and its verbs; json_errors: usage errors as JSON objects (the command
    line has --json; argparse reports them before the flag is parsed)."""
    p = sub.add_parser("admin", help="operate a zero cluster (state, status, remove-node, ...)",
                       description="Operate a zero cluster through any of its zeros. Exit codes: 0 ok, "
                                   "1 refused, 2 usage, 3 unreachable. With --json the result is JSON on "
                                   "stdout (64-bit numbers as strings, as proto3 JSON) and an error is one "
                                   "JSON object on stderr: {\"error\": MESSAGE, \"code\": CODE}, CODE a gRPC "
                                   "status name, USAGE, UNREACHABLE or FAILED.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", default=os.environ.get("ZERO_ADDR", "localhost:5080"),
                        help="gRPC address of any zero, HOST:PORT (default localhost:5080) [env ZERO_ADDR]")
    common.add_argument("--token", default=None,
                        help="admin token, sent as 'authorization: Bearer <token>' "
                             "[env ZERO_ADMIN_TOKEN; prefer the variable, flags show in ps]")
    common.add_argument("--tls-dir", default=os.environ.get("ZERO_TLS_DIR") or None, metavar="DIR",
                        help="mutual TLS: DIR holds ca.crt, node.crt (an admin certificate: OU=admin) and "
                             "node.key [env ZERO_TLS_DIR]")
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    sv = verbs.add_parser("state", parents=[common], help="the membership state (linearizable): totals and the "
                          "largest groups, one group, or tablets found by name")
    sv.add_argument("--top", type=_count, default=20, help="how many of the largest groups to list (default 20)")
    sv.add_argument("--group", type=_count, default=0, help="one group, its tablets a page at a time")
    sv.add_argument("--tablet", default="", metavar="TEXT", help="the tablets whose names contain TEXT")
    sv.add_argument("--offset", type=_count, default=0, help="skip this many groups (or tablets, with --group)")
    sv.add_argument("--limit", type=_count, default=100, help="tablets listed with --group or --tablet (default 100)")
    sv.add_argument("--all", action="store_true", help="every group and its largest tablets (small clusters get "
                    "this by default); with --json the whole state is printed unless --group or --tablet is given")
    verbs.add_parser("status", parents=[common],
                     help="this zero's Raft status, and the zeros as the leader sees them (asked of the leader)")
    rn = verbs.add_parser("remove-node", parents=[common], help="remove a data node, or a zero with --group 0")
    rn.add_argument("--id", type=int, required=True, help="member id (raft id for a zero)")
    rn.add_argument("--group", type=int, default=0, help="the member's group; 0 means a zero peer (default 0)")
    mt = verbs.add_parser("move-tablet", parents=[common], help="move a tablet to another group now")
    mt.add_argument("--tablet", "--predicate", dest="tablet", required=True, help="tablet (predicate) name")
    mt.add_argument("--group", type=int, required=True, help="destination group")
    tl = verbs.add_parser("transfer-leader", parents=[common], help="hand Raft leadership to another zero")
    tl.add_argument("--to", type=int, default=0, help="raft id of the new leader (default: the best follower)")
    verbs.add_parser("snapshot", parents=[common], help="take a snapshot and compact the log now")
    rb = verbs.add_parser("rebalance", parents=[common], help="turn the rebalancer on or off, or run it now")
    rb.add_argument("mode", choices=["on", "off", "now"])
    verbs.add_parser("health", parents=[common], help="exit 0 when the zero at --addr serves (gRPC health)")
    bk = verbs.add_parser("backup", parents=[common], help="write a consistent backup of the state to a file")
    bk.add_argument("--out", required=False, help="file to write")
    bk.add_argument("--verify", metavar="FILE", help="check a backup file without a cluster")
    placement_verbs.add_verbs(verbs, common)  # placement, replicas, drain, explain, delete-tablet, bump
    moves_verbs.add_verbs(verbs, common)  # moves, cancel-move
    if json_errors:
        for parser in (p, *verbs.choices.values()):
            # argparse has no hook for usage errors: its documented way is to override error().
            json_error = (lambda prs: lambda message: _json_usage_error(prs, message))(parser)
            parser.error = json_error  # type: ignore[method-assign]


def _print(out: TextIO, as_json: bool, obj: object, human: Callable[[], str]) -> None:
    if as_json:
        out.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    else:
        out.write(human().rstrip("\n") + "\n")


def _fail(ns: argparse.Namespace, err: TextIO, message: str, code: str, exit_code: int) -> int:
    """Report an error: one line, or with --json one JSON object; returns exit_code."""
    if getattr(ns, "json", False):
        err.write(json.dumps({"error": message, "code": code}) + "\n")
    else:
        err.write(f"zero admin {ns.verb}: {message}\n")
    return exit_code


def _out_problem(path: str) -> str | None:
    """Why `backup --out PATH` could not be written, found before asking zero for a backup:
    the very temp file the atomic write uses is created and removed."""
    if os.path.isdir(path):
        return f"--out {path} is a directory; give a file name"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        return f"--out {path}: directory {parent} {what}"
    tmp = backup.temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return f"--out {path} cannot be written: {e.strerror or e}"
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def _msg_dict(m: Message) -> dict[str, Any]:  # JSON values
    return MessageToDict(m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _count(raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw[:40]!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative")
    return v


def _selected(st: zero_pb2.MembershipState, view: StateView) -> dict[str, Any]:
    """`state --json --group G` / `--tablet TEXT`: the state with only that group (its
    tablets paged as the text is), or only the tablets found, in the state's own JSON."""
    part = zero_pb2.MembershipState()
    copy_header(part, st)
    if view.group and view.group in st.groups:
        g = st.groups[view.group]
        part.groups[view.group].members.MergeFrom(g.members)
        for t in state_summary.tablet_page(g, view.offset, view.limit):
            part.groups[view.group].tablets[t.predicate].CopyFrom(t)
    elif view.tablet:
        for t in state_summary.find_tablets(st.groups, view.tablet, view.limit)[0]:
            part.groups[t.group_id].tablets[t.predicate].CopyFrom(t)
    return _msg_dict(part)


def _status_text(s: zero_pb2.RaftStatusResponse, addr: str, leader: zero_pb2.RaftStatusResponse | None = None,
                 leader_error: str = "") -> str:
    """This zero's Raft status, then the peers as the leader sees them: from this zero's
    own answer when it leads, else from the leader's (`leader`), which `zero admin status`
    asked for; `leader_error` says why that answer is missing."""
    lines = [f"zero {s.id} at {addr} answered:",
             f"raft id {s.id}  role {s.role}  term {s.term}  leader {s.lead or '-'}"
             f"{' (' + s.leader_addr + ')' if s.leader_addr else ''}",
             f"commit {s.commit}  applied {s.applied}  cluster {s.cluster_id or '-'}"]
    view = s if s.progress else leader
    if view is not None and view.progress:
        if view is s:
            lines.append("peers (as this zero, the leader, sees them):")
        else:
            lines.append(f"peers (as the leader, zero {view.id} at {s.leader_addr}, sees them; "
                         f"its commit {view.commit}, term {view.term}):")
        for pid in sorted(view.progress):
            p = view.progress[pid]
            what = "leader" if pid == view.id else f"match {p.match:<10} next {p.next:<10} {p.state}"
            lines.append(f"  {pid:>4}  {'healthy' if p.recent_active else 'UNHEALTHY':<9}  {what}"
                         f"{' learner' if p.learner else ''}")
    elif not s.lead:
        lines.append("peers: unknown (this zero knows no leader; ask another zero)")
    elif leader_error:
        lines.append(f"peers: the leader (zero {s.lead} at {s.leader_addr or '?'}) did not answer: {leader_error}")
    lines.append(_oracle_text(s.oracle if s.oracle.serving or leader is None else leader.oracle))
    return "\n".join(lines)


def _oracle_text(o: zero_pb2.OracleStatus) -> str:
    """The oracle in one line (the leader's counters when it is the leader's answer)."""
    aborts = ", ".join(f"{k.lower().replace('_', ' ')} {v}" for k, v in sorted(o.aborts.items())) or "none"
    head = f"oracle: max_assigned {o.max_assigned}" if o.serving else "oracle (the leader serves it):"
    return (f"{head}  safe_ts {o.safe_ts}  commits {o.commits}  aborts: {aborts}  pending {o.pending}  "
            f"conflict keys {o.conflict_keys}  decisions kept {o.decisions}")


def _leader_oracle(ns: argparse.Namespace, admin: zero_pb2_grpc.ZeroAdminStub, md: Metadata,
                   make_channel: Callable[[str], grpc.Channel] | None) -> zero_pb2.OracleStatus | None:
    """The oracle as the leader reports it (RaftStatus, an admin call); None when the
    answer is not to be had (no token, no leader): `state` prints the shard map anyway."""
    try:
        s: zero_pb2.RaftStatusResponse = admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=ns.timeout,
                                                          metadata=md)
    except grpc.RpcError:
        return None
    if s.oracle.serving or make_channel is None:
        return s.oracle
    lead, _ = _leader_status(ns, s, md, make_channel)
    return lead.oracle if lead is not None else s.oracle


def _leader_status(ns: argparse.Namespace, s: zero_pb2.RaftStatusResponse, md: Metadata,
                   make_channel: Callable[[str], grpc.Channel]) -> tuple[zero_pb2.RaftStatusResponse | None, str]:
    """The leader's RaftStatus when the zero at --addr is a follower that knows the leader
    (RaftStatus answers locally, and only the leader knows its peers): (answer, "") or
    (None, why not)."""
    if s.progress or not s.lead or s.lead == s.id:
        return None, ""
    if not s.leader_addr:
        return None, "its address is not known yet"
    try:
        with make_channel(s.leader_addr) as ch:
            r = zero_pb2_grpc.ZeroAdminStub(ch).RaftStatus(zero_pb2.RaftStatusRequest(), timeout=ns.timeout,
                                                           metadata=md)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        return None, f"{code.name}: {details}"
    if not r.progress:
        return None, f"zero {r.id} at {s.leader_addr} is not the leader any more (role {r.role}); retry"
    return r, ""


def run_admin(ns: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one admin verb; returns the exit code. out/err: sys.stdout/sys.stderr (as they
    are when called)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if ns.verb == "backup" and ns.verify:
        return _verify_backup(ns, out, err)
    if ns.verb == "backup" and not ns.out:
        return _fail(ns, err, "--out FILE is required", "USAGE", EXIT_USAGE)
    addr = (ns.addr or "").strip()
    try:
        validate.address(addr, "--addr")
    except InvalidArgumentError as e:
        return _fail(ns, err, str(e), "USAGE", EXIT_USAGE)
    ns.addr = addr
    if ns.verb == "backup":
        problem = _out_problem(ns.out)
        if problem is not None:
            return _fail(ns, err, problem, "FAILED", EXIT_REFUSED)
    token = ns.token or os.environ.get("ZERO_ADMIN_TOKEN") or None
    md = [("authorization", f"Bearer {token}")] if token else None
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 16 << 20)]
    try:
        tls = load_tls(ns.tls_dir) if ns.tls_dir else None
    except TlsError as e:
        return _fail(ns, err, str(e), "USAGE", EXIT_USAGE)

    def make_channel(addr: str) -> grpc.Channel:
        return (grpc.secure_channel(addr, tls.channel_credentials(), options=opts) if tls is not None
                else grpc.insecure_channel(addr, options=opts))

    try:
        with make_channel(ns.addr) as ch:
            return _dispatch(ns, ch, md, out, err, make_channel)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        if code in _UNREACHABLE_CODES:
            return _fail(ns, err, f"{ns.addr} unreachable or without a leader: {details}", code.name,
                         EXIT_UNREACHABLE)
        return _fail(ns, err, f"refused ({code.name}): {details}", code.name, EXIT_REFUSED)


def _verify_backup(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`zero admin backup --verify FILE`: no cluster needed. 0 ok, 1 with what is wrong."""
    try:
        b = backup.verify(ns.verify)
    except backup.BackupError as e:
        return _fail(ns, err, str(e), "FAILED", EXIT_REFUSED)
    _print(out, ns.json, {"ok": True, "file": ns.verify, **_msg_dict(b.header)},
           lambda: f"{ns.verify}: ok\n{b.summary()}")
    return EXIT_OK


def _health_check(ch: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest,
                                                                   health_pb2.HealthCheckResponse]:
    """grpc.health.v1.Health/Check on `ch`, as health_pb2_grpc.HealthStub makes it (whose
    type stubs declare no methods)."""
    return ch.unary_unary("/grpc.health.v1.Health/Check",
                          request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                          response_deserializer=health_pb2.HealthCheckResponse.FromString)


def _dispatch(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata, out: TextIO, err: TextIO,
              make_channel: Callable[[str], grpc.Channel] | None = None) -> int:
    t = ns.timeout
    zero = zero_pb2_grpc.ZeroStub(ch)
    admin = zero_pb2_grpc.ZeroAdminStub(ch)
    v = ns.verb
    if v == "health":
        h = _health_check(ch)(health_pb2.HealthCheckRequest(service=""), timeout=t)
        ok = h.status == health_pb2.HealthCheckResponse.SERVING
        _print(out, ns.json, {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(h.status)},
               lambda: f"{ns.addr}: {health_pb2.HealthCheckResponse.ServingStatus.Name(h.status)}")
        return EXIT_OK if ok else EXIT_REFUSED
    if v == "state":
        st = zero.GetState(zero_pb2.GetStateRequest(), timeout=t)
        oracle = _leader_oracle(ns, admin, md, make_channel)
        doc = _msg_dict(st)
        if oracle is not None:
            doc["oracle"] = _msg_dict(oracle)
        view = StateView(top=ns.top, group=ns.group, tablet=ns.tablet, offset=ns.offset, limit=ns.limit,
                         everything=ns.all)
        if ns.json and (ns.group or ns.tablet):
            doc = _selected(st, view)
        _print(out, ns.json, doc,
               lambda: state_text(st, view) + ("\n" + _oracle_text(oracle) if oracle is not None else ""))
        return EXIT_OK
    if v == "status":
        s = admin.RaftStatus(zero_pb2.RaftStatusRequest(), timeout=t, metadata=md)
        # A follower knows no peers: the leader's own answer lists them, as it sees them.
        lead, why = _leader_status(ns, s, md, make_channel) if make_channel is not None else (None, "")
        doc = _msg_dict(s)
        doc["answered_by"] = {"raft_id": str(s.id), "addr": ns.addr}
        if lead is not None:
            doc["leader_status"] = {**_msg_dict(lead), "answered_by": {"raft_id": str(lead.id),
                                                                       "addr": s.leader_addr}}
        elif why:
            doc["leader_status_error"] = why
        _print(out, ns.json, doc, lambda: _status_text(s, ns.addr, lead, why))
        return EXIT_OK
    if v == "remove-node":
        r = admin.RemoveNode(zero_pb2.RemoveNodeRequest(node_id=ns.id, group_id=ns.group), timeout=t, metadata=md)
        _print(out, ns.json, _msg_dict(r),
               lambda: f"removed {'zero' if ns.group == 0 else 'member'} {ns.id}")
        return EXIT_OK
    if v == "move-tablet":
        r = admin.MoveTablet(zero_pb2.MoveTabletRequest(predicate=ns.tablet, dst_group=ns.group), timeout=t,
                             metadata=md)
        if not r.committed:  # zero rolled the move back: the tablet stays where it was
            _print(out, ns.json, _msg_dict(r), lambda: f"move {r.move_id} of tablet {ns.tablet} {r.message}")
            return EXIT_REFUSED
        _print(out, ns.json, _msg_dict(r), lambda: f"moved tablet {ns.tablet} to group {ns.group}: {r.message}")
        return EXIT_OK
    if v == "transfer-leader":
        r = admin.TransferLeadership(zero_pb2.TransferLeadershipRequest(transferee=ns.to), timeout=t, metadata=md)
        _print(out, ns.json, _msg_dict(r), lambda: f"leadership transferred to zero {r.leader_id}")
        return EXIT_OK
    if v == "snapshot":
        r = admin.Snapshot(zero_pb2.SnapshotRequest(), timeout=t, metadata=md)
        _print(out, ns.json, _msg_dict(r),
               lambda: f"snapshot at index {r.index} (term {r.term}, {r.size_bytes:,} bytes)")
        return EXIT_OK
    if v == "rebalance":
        mode = {"on": zero_pb2.SetRebalanceRequest.ON, "off": zero_pb2.SetRebalanceRequest.OFF,
                "now": zero_pb2.SetRebalanceRequest.NOW}[ns.mode]
        r = admin.SetRebalance(zero_pb2.SetRebalanceRequest(mode=mode), timeout=t, metadata=md)
        started = ", ".join(str(m) for m in r.started_moves) or "none"
        _print(out, ns.json, _msg_dict(r), lambda: f"rebalance {ns.mode}: rebalancing is "
               f"{'on' if r.enabled else 'off'}" + (f"; moves started: {started}" if ns.mode == "now" else ""))
        return EXIT_OK
    if v == "backup":
        # Collected whole and verified before the atomic write: a broken stream or a
        # damaged transfer never leaves a file that looks like a backup.
        parts: list[bytes] = []
        total = -1
        for c in admin.Backup(zero_pb2.BackupRequest(), timeout=t, metadata=md):
            if c.offset != sum(map(len, parts)):
                return _fail(ns, err, f"chunk at offset {c.offset} arrived out of order; nothing written", "FAILED",
                             EXIT_REFUSED)
            parts.append(c.data)
            total = c.total_size
            if c.last:
                break
        data = b"".join(parts)
        if len(data) != total:
            return _fail(ns, err, f"the stream ended after {len(data):,} of {total:,} bytes; nothing written",
                         "UNREACHABLE", EXIT_UNREACHABLE)
        try:
            b = backup.decode(data, name="the received backup")
        except backup.BackupError as e:
            return _fail(ns, err, f"{e}; nothing written", "FAILED", EXIT_REFUSED)
        try:
            n = backup.write_atomically(ns.out, [data])
        except OSError as e:
            return _fail(ns, err, f"cannot write {ns.out}: {e.strerror or e}; nothing written", "FAILED",
                         EXIT_REFUSED)
        # 64-bit numbers as strings, as proto3 JSON (and every other verb's output) has them.
        _print(out, ns.json, {"out": ns.out, "bytes": str(n), **_msg_dict(b.header)},
               lambda: f"backup written to {ns.out} ({n:,} bytes)\n{b.summary()}")
        return EXIT_OK
    if v in moves_verbs.VERBS:
        return moves_verbs.run_verb(ns, admin, md, out, _print, _msg_dict)
    if v in placement_verbs.VERBS:
        try:
            return placement_verbs.run_verb(ns, admin, md, out, _print, _msg_dict)
        except InvalidArgumentError as e:
            return _fail(ns, err, str(e), "USAGE", EXIT_USAGE)
    return _fail(ns, err, f"unknown verb {v!r}", "USAGE", EXIT_USAGE)
