"""The `zero` command (SPEC "Processes, ports, CLI"): `zero run` starts one zero node,
`zero datanode` the reference data node, `zero admin VERB` operates a running cluster.

Every flag of `zero run` can also be given as an environment variable ZERO_<FLAG>
(`--grpc-addr` is ZERO_GRPC_ADDR); a flag on the command line wins over the variable.
A flag whose feature is not built yet is refused with exit code 2, never ignored.

Exit codes: 0 after a clean shutdown, also one asked for by SIGTERM or SIGINT at any
stage (while starting, waiting for --peer, joining or running), 1 when zero cannot start
or its Raft loop fails (corrupt or locked data dir, port in use, a --peer that is not a
zero or does not answer within --join-timeout), 2 for usage errors.
"""

from __future__ import annotations

import os
import signal
import sys


def _stopped_before_start(signum: int, _frame: object) -> None:
    """`zero run` before its event loop takes the signals over (importing gRPC and aiohttp
    takes a second or more): nothing is started yet, so a requested stop is one line and
    exit 0, never a KeyboardInterrupt traceback or a silent exit 143."""
    os.write(2, f"zero: stopped by {signal.Signals(signum).name} while starting\n".encode())
    os._exit(0)


if sys.argv[1:2] == ["run"] and os.path.basename(sys.argv[0]) in ("zero", "__main__.py"):
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _stopped_before_start)

import argparse  # noqa: E402 (after the handlers above: these imports are the slow part)
import asyncio  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from zero.state import validate  # noqa: E402
from zero.ops.admin import add_admin_parser, run_admin  # noqa: E402
from zero.runner import run  # noqa: E402
from zero.config import RunConfig, parse_duration  # noqa: E402
from zero.datanode.cli import add_datanode_parser  # noqa: E402
from zero.datanode.cli import main as datanode_main  # noqa: E402
from zero.ops.local import add_local_parser, run_local  # noqa: E402
from zero.errors import InvalidArgumentError  # noqa: E402
from zero.log import LOG_FORMATS  # noqa: E402
from zero.ops.recovery import add_restore_parser, run_restore  # noqa: E402
from zero.security import TLS_FILES, check_tls_dir  # noqa: E402

__all__ = ["main", "build_parser", "parse_duration", "config_from_args", "UsageError"]

EXIT_USAGE = 2
class UsageError(Exception):
    """A bad flag or environment value: exit 2 with this message."""


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str  # without the leading dashes
    metavar: str | None
    default: str | None
    help: str
    boolean: bool = False

    @property
    def env(self) -> str:
        return "ZERO_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


RUN_FLAGS = (
    _Flag("raft-id", "N", None,
          "this zero's Raft id (default 1 for a new cluster). A data dir keeps the id it was "
          "created with; giving a different one is refused."),
    _Flag("my", "HOST:PORT", None,
          "the address peers and data nodes use to reach this zero's gRPC port "
          "(default localhost:<gRPC port>)"),
    _Flag("peer", "HOST:PORT", None,
          "any live zero of an existing cluster: a new data dir joins that cluster through it "
          "(the cluster assigns the raft id unless --raft-id is given). Ignored on restart: "
          "the data dir keeps its identity."),
    _Flag("join-timeout", "DURATION", "60s",
          "with --peer on a new data dir: how long to keep trying while the peer does not answer, or "
          "answers without a leader (each retry is logged with the time left); a peer that answers but "
          "is not a zero fails at once"),
    _Flag("grpc-addr", "HOST:PORT", "0.0.0.0:5080", "where the gRPC services listen (Zero, ZeroAdmin, health, reflection)"),
    _Flag("http-addr", "HOST:PORT", "0.0.0.0:6080",
          "where HTTP listens (/health, /live, /state, /metrics, /); HTTPS with --tls-dir"),
    _Flag("live-addr", "HOST:PORT", None,
          "also serve /live alone over plain HTTP here, for liveness probes that cannot do TLS "
          "while --tls-dir makes the HTTP port HTTPS (default: off)"),
    _Flag("data-dir", "DIR", "./zw", "directory for the write-ahead log, snapshots and identity; one zero per dir"),
    _Flag("replicas", "N", "1", "data nodes per group: new data nodes fill a group up to N before a new group starts"),
    _Flag("rebalance-interval", "DURATION", "8m",
          "how often the leader moves a tablet from the largest group to the smallest when their sizes "
          "differ by more than 10%% (e.g. 30s, 8m); 0 disables (`zero admin rebalance now` still works)"),
    _Flag("move-timeout", "DURATION", "10m",
          "a tablet move whose copy has not finished within this is rolled back"),
    _Flag("tick", "DURATION", "100ms", "the Raft tick (e.g. 100ms, 0.1s); heartbeats go out every tick"),
    _Flag("election-ticks", "N", "5", "ticks without a leader before an election (election timeout = N x tick)"),
    _Flag("snapshot-after", "N", "10000", "applied entries between automatic snapshots (the log is compacted behind them)"),
    _Flag("tls-dir", "DIR", None,
          "mutual TLS on every gRPC connection (peers, data nodes, admin clients): DIR holds ca.crt "
          "(the cluster CA), node.crt (this zero's certificate, OU=zero, with a subjectAltName for "
          "the --my host) and node.key. Clients must present a certificate signed by the CA; its OU "
          "(zero, datanode, admin) decides which services it may call. The HTTP port serves HTTPS "
          "with the same certificate (a client certificate is optional there). SIGHUP, or a change "
          "of the files, reloads them for new connections; an expired or not-yet-valid certificate "
          "is refused at start."),
    _Flag("admin-token", "TOKEN", None,
          "require 'authorization: Bearer TOKEN' metadata on ZeroAdmin calls and forced tablet "
          "assignments (prefer the ZERO_ADMIN_TOKEN variable: flags show in `ps`). Never logged."),
    _Flag("log-format", "json|console", None, "log rendering (default: console on a terminal, JSON lines otherwise)"),
    _Flag("force-new-cluster", None, None,
          "LAST RESORT after losing a majority of zeros for good: rewrite this data dir into a new "
          "single-zero cluster (new cluster id, every other zero removed, data kept, leases jump "
          "as with --lease-margin; the old WAL is kept as wal.old-<time>). Remove the flag afterwards.",
          boolean=True),
    _Flag("lease-margin", "N", "1000000",
          "with --force-new-cluster: ids and timestamps skipped above the recovered maxima "
          "(leases continue above max(maximum + N, unix-ms x 1000))"),
)


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """The whole command line; json_errors: `zero admin` usage errors as JSON objects
    (main() sets it when an admin command line has --json)."""
    parser = argparse.ArgumentParser(
        prog="zero", description="zero: a cluster coordinator modeled on Dgraph Zero, on raftcore.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run_p = sub.add_parser(
        "run", help="run one zero node", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one zero node. With no flags it serves a new single-zero cluster:\n"
                    "gRPC on 0.0.0.0:5080, HTTP on 0.0.0.0:6080, data in ./zw.\n\n"
                    "Every flag can also be set through an environment variable ZERO_<FLAG>\n"
                    "(--grpc-addr: ZERO_GRPC_ADDR); the command line wins.",
        epilog="SIGTERM or SIGINT shut zero down gracefully (exit 0), also while it starts or joins.\n"
               "Exit 1: zero could not start (corrupt or locked data dir, port in use, a --peer\n"
               "that is not a zero or did not answer within --join-timeout) or its Raft loop\n"
               "failed. Exit 2: usage.")
    for f in RUN_FLAGS:
        default = f" (default {f.default})" if f.default is not None else ""
        help_text = f"{f.help}{default} [env {f.env}]"
        if f.boolean:
            run_p.add_argument(f"--{f.name}", dest=f.dest, action="store_true", default=None, help=help_text)
        else:
            run_p.add_argument(f"--{f.name}", dest=f.dest, metavar=f.metavar, default=None, help=help_text)
    add_admin_parser(sub, json_errors=json_errors)
    add_datanode_parser(sub)
    add_restore_parser(sub)
    add_local_parser(sub)
    return parser


def _value(ns: argparse.Namespace, f: _Flag, environ: dict[str, str]) -> tuple[str | None, str]:
    """The flag's raw value and where it came from (for messages)."""
    v = getattr(ns, f.dest)
    if v is not None:
        return (str(v) if not f.boolean else "true"), f"--{f.name}"
    if f.env in environ:
        return environ[f.env], f"{f.env}"
    return f.default, f"--{f.name} (default)"


def _bool(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{where}: {text!r} is not a boolean (true/false)")


def _int(text: str, where: str, lo: int, hi: int) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise UsageError(f"{where}: {n} is out of range ({lo}..{hi})")
    return n


def _addr(text: str, where: str, *, listen: bool) -> str:
    t = text.strip()
    try:
        return validate.address(t, where, port_zero=listen)  # a listen port 0: any free port
    except InvalidArgumentError as e:
        raise UsageError(str(e)) from None


def config_from_args(ns: argparse.Namespace, environ: dict[str, str] | None = None) -> RunConfig:
    """Validate `zero run`'s flags (and ZERO_* variables) into a RunConfig; UsageError
    says which flag is wrong and why."""
    env = dict(os.environ if environ is None else environ)
    raw = {f.name: _value(ns, f, env) for f in RUN_FLAGS}

    def get(name: str) -> tuple[str | None, str]:
        return raw[name]

    # Features that arrive later: refused, never accepted and ignored.
    peer_text, where = get("peer")
    peer = _addr(peer_text, where, listen=False) if peer_text else ""
    tls, where = get("tls-dir")
    if tls and check_tls_dir(tls):
        raise UsageError(f"{where}: " + "; ".join(check_tls_dir(tls)) + f" (expected {', '.join(TLS_FILES)})")
    fnc, where = get("force-new-cluster")
    force_new_cluster = fnc is not None and _bool(fnc, where)
    if force_new_cluster and peer:
        raise UsageError(f"{where}: --force-new-cluster starts a cluster from this data dir alone; drop --peer")
    lease_margin = _int(get("lease-margin")[0] or "", get("lease-margin")[1], 0, 1 << 62)
    rb_text, where = get("rebalance-interval")
    try:
        rebalance = parse_duration(rb_text or "8m")
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    mt_text, mt_where = get("move-timeout")
    try:
        move_timeout = parse_duration(mt_text or "10m")
    except ValueError as e:
        raise UsageError(f"{mt_where}: {e}") from None
    if move_timeout <= 0:
        raise UsageError(f"{mt_where}: the move timeout must be above 0")

    jt_text, jt_where = get("join-timeout")
    try:
        join_timeout = parse_duration(jt_text or "60s")
    except ValueError as e:
        raise UsageError(f"{jt_where}: {e}") from None
    if not 1.0 <= join_timeout <= 86400.0:
        raise UsageError(f"{jt_where}: the join timeout must be between 1s and 24h, not {jt_text}")

    rid_text, where = get("raft-id")
    raft_id = _int(rid_text, where, 1, (1 << 64) - 2) if rid_text else 0
    grpc_addr = _addr(get("grpc-addr")[0] or "", get("grpc-addr")[1], listen=True)
    http_addr = _addr(get("http-addr")[0] or "", get("http-addr")[1], listen=True)
    live_text, where = get("live-addr")
    live_addr = _addr(live_text, where, listen=True) if live_text else None
    my_text, where = get("my")
    if my_text:
        my: str | None = _addr(my_text, where, listen=False)
    else:
        port = grpc_addr.rpartition(":")[2]
        my = f"localhost:{port}" if port != "0" else None  # port 0: the bound one
    data_dir, where = get("data-dir")
    if not data_dir or not data_dir.strip():
        raise UsageError(f"{where}: the data dir is empty")
    replicas = _int(get("replicas")[0] or "", get("replicas")[1], 1, 99)
    tick_text, where = get("tick")
    try:
        tick = parse_duration(tick_text or "")
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    if not 0.001 <= tick <= 10.0:
        raise UsageError(f"{where}: the tick must be between 1ms and 10s, not {tick_text}")
    election_ticks = _int(get("election-ticks")[0] or "", get("election-ticks")[1], 2, 10_000)
    snapshot_after = _int(get("snapshot-after")[0] or "", get("snapshot-after")[1], 1, 1 << 40)
    token, where = get("admin-token")
    if token is not None:
        if not token or not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise UsageError(f"{where}: the admin token must be non-empty printable ASCII without spaces")
    fmt, where = get("log-format")
    if fmt is not None and fmt not in LOG_FORMATS:
        raise UsageError(f"{where}: {fmt!r} is not a log format ({' or '.join(LOG_FORMATS)})")
    return RunConfig(
        tls_dir=tls or None,
        data_dir=data_dir, grpc_addr=grpc_addr, http_addr=http_addr, my=my, raft_id=raft_id, peer=peer,
        replicas=replicas, tick=tick, election_ticks=election_ticks, snapshot_after=snapshot_after,
        rebalance_interval=rebalance, move_timeout=move_timeout, admin_token=token or None, log_format=fmt,
        force_new_cluster=force_new_cluster, lease_margin=lease_margin, join_timeout=join_timeout,
        live_addr=live_addr)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(json_errors=args[:1] == ["admin"] and "--json" in args)
    ns = parser.parse_args(args)
    if ns.command == "run":
        try:
            cfg = config_from_args(ns)
        except UsageError as e:
            parser.exit(EXIT_USAGE, f"zero run: error: {e}\n")
        return asyncio.run(run(cfg))
    if ns.command == "admin":
        return run_admin(ns)
    if ns.command == "datanode":
        return datanode_main(ns)
    if ns.command == "restore":
        return run_restore(ns)
    if ns.command == "local":
        return run_local(ns)
    parser.error(f"unknown command {ns.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
