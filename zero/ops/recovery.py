"""Disaster recovery: `zero restore` (a new cluster from a backup) and
`zero run --force-new-cluster` (a new cluster from a surviving zero's data dir).
docs/DESIGN.md "Disaster recovery" states the rules; in short:

- Both produce a data dir whose WAL holds one snapshot: the recovered state, rewritten,
  with a Raft configuration of this zero alone. `zero run` then restarts from it like any
  zero, and other zeros join it with --peer.
- The rewritten state has a new cluster id, so the transport refuses every old zero (it
  admits only the current cluster id); the old zeros are also recorded as removed, so
  their ids are never reused and a JoinCluster naming one is refused. Every data-node
  member, group, tablet and move is kept.
- Leases continue above max(backed-up maximum + margin, unix-ms x 1000), for UIDs and
  timestamps alike (`continue_lease`): the margin covers what the old cluster handed out
  after the backup (or, for a survivor, entries it never received); the wall-clock floor
  covers any amount, as long as no cluster hands out more than 1,000 ids per
  millisecond on average since it was created, restored or forced.
- `--force-new-cluster` keeps the old WAL as `<data-dir>/wal.old-<time>`, and records the
  new cluster id in `<data-dir>/FORCED_NEW_CLUSTER`: a restart that still carries the flag
  (an env var left set) does not force again, which would cut off zeros joined since.

Everything here runs before the node starts, on files only; nothing is served meanwhile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from raftcore import StorageError, raftpb
from raftcore.wal import DiskStorage
from raftcore.wal.files import fsync_dir

from zero.ops import backup as backup_mod
from zero.errors import ZeroError
from zero.log import Logger
from zero.replica.identity import JOIN_ANSWER_FILE, Identity, load_identity, save_identity
from zero.pb import state_pb2, zero_pb2
from zero.state.leases import MAX_LEASE
from zero.state.machine import ZeroState
from zero.state.tables import UINT64_MAX

__all__ = ["LEASE_MARGIN", "WAL_DIR", "FORCED_FILE", "RecoveryError", "Recovered", "Outcome",
           "continue_lease", "lease_floor", "load_data_dir", "rewrite", "write_data_dir", "restore",
           "force_new_cluster"]

LEASE_MARGIN = 1_000_000
WAL_DIR = "wal"
FORCED_FILE = "FORCED_NEW_CLUSTER"
WALL_CLOCK_IDS_PER_MS = 1000


class RecoveryError(ZeroError):
    """Recovery refused; nothing was changed."""

    code = "FAILED_PRECONDITION"


@dataclass(frozen=True, slots=True)
class Recovered:
    """A state read back from disk, at Raft `index` of `term`."""

    state: ZeroState
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a restore or force-new-cluster did (printed and logged)."""

    data_dir: str
    raft_id: int
    old_cluster_id: str
    cluster_id: str
    index: int
    old_max_uid: int
    max_uid: int
    old_max_txn_ts: int
    max_txn_ts: int
    removed_zeros: tuple[int, ...]
    groups: int
    members: int
    tablets: int
    old_wal: str = ""

    def text(self) -> str:
        lines = [f"new cluster {self.cluster_id} (was {self.old_cluster_id or '-'}) in {self.data_dir}, "
                 f"raft id {self.raft_id}, at index {self.index}",
                 f"kept {self.groups} groups, {self.members} members, {self.tablets} tablets",
                 f"old zeros recorded as removed: {list(self.removed_zeros) or 'none'}",
                 f"leases continue above: uid {self.old_max_uid} -> {self.max_uid}, "
                 f"timestamp {self.old_max_txn_ts} -> {self.max_txn_ts}"]
        if self.old_wal:
            lines.append(f"the old WAL is kept in {self.old_wal}")
        return "\n".join(lines)


def lease_floor(now_ms: int) -> int:
    """The wall-clock floor under every continued lease."""
    return now_ms * WALL_CLOCK_IDS_PER_MS


def continue_lease(backed_up: int, margin: int, now_ms: int) -> int:
    """The new maximum of a lease counter: max(backed_up + margin, unix-ms x 1000)."""
    new = max(backed_up + margin, lease_floor(now_ms))
    if new > UINT64_MAX - MAX_LEASE:
        raise RecoveryError(f"continuing a lease above {backed_up} by {margin} would exhaust uint64")
    return new


# -- reading -----------------------------------------------------------------------------------
def load_data_dir(data_dir: str) -> Recovered:
    """The state a zero's data dir holds: its last snapshot, plus every entry of its log
    applied in order (conf-change contexts included). Entries past the known commit index
    are applied too: that is what Raft would do if this zero won an election now (a new
    leader commits its whole log), and it keeps every entry that may have been
    acknowledged by a leader this zero never heard commit it."""
    wal = os.path.join(data_dir, WAL_DIR)
    if not os.path.isdir(wal):
        raise RecoveryError(f"{data_dir} has no {WAL_DIR}/ directory: not a zero data dir")
    storage = DiskStorage.open(wal)
    try:
        snap = storage.snapshot()
        state = ZeroState.restore(snap.data) if snap.metadata.index > 0 else ZeroState()
        index, term = snap.metadata.index, snap.metadata.term
        first, last = storage.first_index(), storage.last_index()
        if last >= first:
            for e in storage.entries(first, last + 1):
                _apply_entry(state, e)
                index, term = e.index, e.term
    finally:
        storage.close()
    return Recovered(state, index, term)


def _apply_entry(state: ZeroState, e: raftpb.Entry) -> None:
    data = b""
    if e.type == raftpb.EntryNormal:
        data = e.data
    elif e.type == raftpb.EntryConfChange:
        data = raftpb.ConfChange.FromString(e.data).context
    elif e.type == raftpb.EntryConfChangeV2:
        data = raftpb.ConfChangeV2.FromString(e.data).context
    if not data:
        return
    try:
        state.apply(e.index, state_pb2.Proposal.FromString(data))
    except ZeroError:
        pass  # refused when it was applied too: it changed nothing then either


# -- rewriting ---------------------------------------------------------------------------------
def rewrite(state: ZeroState, *, raft_id: int, keep_self: bool, cluster_id: str, margin: int,
            now_ms: int, index: int) -> ZeroState:
    """The state of a new single-zero cluster: `cluster_id`, every other zero recorded as
    removed (this one kept when `keep_self`, else left for its first `zero run` to add at
    its --my address), leases continued, version = `index`."""
    if margin < 0:
        raise RecoveryError(f"the lease margin must not be negative ({margin})")
    if state.is_removed(raft_id, zero=True):
        raise RecoveryError(f"raft id {raft_id} was removed from the backed-up cluster; ids are never reused: "
                            f"choose another --raft-id")
    def edit(snap: state_pb2.ZeroStateSnapshot) -> None:
        st = snap.state
        for rid in sorted(st.zeros):
            if rid == raft_id and keep_self:
                continue
            z = st.zeros[rid]
            if rid != raft_id:
                st.removed.append(zero_pb2.Member(id=rid, addr=z.addr))
            del st.zeros[rid]
        for rid in list(snap.zero_versions):
            if rid not in st.zeros:
                del snap.zero_versions[rid]
        st.cluster_version = min((snap.zero_versions.get(r, 1) for r in st.zeros), default=0)
        snap.next_raft_id = max(snap.next_raft_id, raft_id + 1)
        st.cluster_id = cluster_id
        st.max_uid = continue_lease(st.max_uid, margin, now_ms)
        st.max_txn_ts = continue_lease(st.max_txn_ts, margin, now_ms)
        st.version = index

    return state.edited(edit)  # restored: every invariant checked again


# -- writing -----------------------------------------------------------------------------------
def write_data_dir(data_dir: str, *, raft_id: int, state: ZeroState, index: int, term: int,
                   wal_name: str = WAL_DIR) -> None:
    """Create `<data_dir>/<wal_name>` holding one snapshot of `state` at (index, term)
    whose configuration is this zero alone, and the commit index at it."""
    wal = os.path.join(data_dir, wal_name)
    if os.path.exists(wal):
        raise RecoveryError(f"{wal} already exists")
    storage = DiskStorage.open(wal)
    try:
        snap = raftpb.Snapshot()
        snap.data = state.snapshot()
        snap.metadata.index = index
        snap.metadata.term = term
        snap.metadata.conf_state.voters.append(raft_id)
        storage.save(raftpb.HardState(term=term, vote=0, commit=index), [], snap, must_sync=True)
    finally:
        storage.close()


def _outcome(data_dir: str, raft_id: int, old: ZeroState, new: ZeroState, index: int, old_wal: str = "") -> Outcome:
    st = new.view
    removed = tuple(sorted(new.removed_zeros - old.removed_zeros))
    return Outcome(
        data_dir=data_dir, raft_id=raft_id, old_cluster_id=old.cluster_id, cluster_id=new.cluster_id, index=index,
        old_max_uid=old.max_uid, max_uid=st.max_uid, old_max_txn_ts=old.max_txn_ts,
        max_txn_ts=st.max_txn_ts, removed_zeros=removed, groups=len(st.groups),
        members=sum(len(g.members) for g in st.groups.values()),
        tablets=sum(len(g.tablets) for g in st.groups.values()), old_wal=old_wal)


def restore(backup_path: str, data_dir: str, raft_id: int, *, margin: int = LEASE_MARGIN,
            now_ms: int | None = None, cluster_id: str | None = None) -> Outcome:
    """`zero restore`: a new single-zero cluster in an empty `data_dir` from a backup."""
    if raft_id <= 0:
        raise RecoveryError(f"--raft-id must be at least 1, not {raft_id}")
    b = backup_mod.read(backup_path)  # BackupError names what is wrong
    if os.path.exists(os.path.join(data_dir, WAL_DIR)) or load_identity(data_dir) is not None:
        raise RecoveryError(f"{data_dir} already holds a zero's data; restore into a new, empty directory")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    index = max(b.header.raft_index, b.state.version) + 1
    new = rewrite(b.state, raft_id=raft_id, keep_self=False, cluster_id=cluster_id or str(uuid.uuid4()),
                  margin=margin, now_ms=now, index=index)
    os.makedirs(data_dir, exist_ok=True)
    write_data_dir(data_dir, raft_id=raft_id, state=new, index=index, term=max(1, b.header.raft_term))
    save_identity(data_dir, Identity(raft_id))  # last: a data dir without IDENTITY is not a zero's yet
    return _outcome(data_dir, raft_id, b.state, new, index)


def _read_forced(data_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(data_dir, FORCED_FILE), "rb") as f:
            doc = json.loads(f.read())
        return doc if isinstance(doc, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged marker only loses the double-force guard: force again


def force_new_cluster(data_dir: str, *, margin: int = LEASE_MARGIN, now_ms: int | None = None,
                      log: Logger | None = None) -> Outcome | None:
    """Rewrite a surviving zero's data dir into a new single-zero cluster (etcd's
    --force-new-cluster). None when this data dir was already forced and has served
    since (the flag was left on): nothing is changed then."""
    ident = load_identity(data_dir)
    if ident is None:
        raise RecoveryError(f"--force-new-cluster needs the data dir of a zero that ran before; {data_dir} has "
                            f"no IDENTITY")
    rid = ident.raft_id
    wal = os.path.join(data_dir, WAL_DIR)
    new_wal = os.path.join(data_dir, WAL_DIR + ".new")
    if not os.path.isdir(wal) and os.path.isdir(new_wal):
        os.rename(new_wal, wal)  # a forcing interrupted between its two renames: finish it
        fsync_dir(data_dir)
    elif os.path.exists(new_wal):
        shutil.rmtree(new_wal)  # interrupted before the swap: the old WAL is still the truth
    rec = load_data_dir(data_dir)
    forced = _read_forced(data_dir)
    if forced is not None and forced.get("cluster_id") == rec.state.cluster_id:
        if log is not None:
            log.warning("--force-new-cluster is still set, but this data dir was already forced into cluster "
                        f"{rec.state.cluster_id}; not forcing again. Remove the flag; to force once more "
                        f"(a new disaster), delete {os.path.join(data_dir, FORCED_FILE)} first")
        return None
    if rec.state.is_removed(rid, zero=True):
        raise RecoveryError(f"zero {rid} was removed from its cluster; its data dir cannot seed a new one")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    index = max(rec.index, rec.state.version) + 1
    new = rewrite(rec.state, raft_id=rid, keep_self=True, cluster_id=str(uuid.uuid4()), margin=margin,
                  now_ms=now, index=index)
    write_data_dir(data_dir, raft_id=rid, state=new, index=index, term=max(1, rec.term), wal_name=WAL_DIR + ".new")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1000))
    old_wal = os.path.join(data_dir, f"{WAL_DIR}.old-{stamp}")
    n = 1
    while os.path.exists(old_wal):
        n += 1
        old_wal = os.path.join(data_dir, f"{WAL_DIR}.old-{stamp}.{n}")
    os.rename(wal, old_wal)
    os.rename(new_wal, wal)
    joined = os.path.join(data_dir, JOIN_ANSWER_FILE)
    if os.path.exists(joined):
        os.rename(joined, os.path.join(old_wal, JOIN_ANSWER_FILE))  # the old cluster's join answer
    fsync_dir(data_dir)
    marker = json.dumps({"cluster_id": new.cluster_id, "old_cluster_id": rec.state.cluster_id,
                         "raft_id": rid, "unix_ms": now, "old_wal": os.path.basename(old_wal)}).encode()
    tmp = os.path.join(data_dir, FORCED_FILE + ".tmp")
    with open(tmp, "wb") as f:
        f.write(marker)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(data_dir, FORCED_FILE))
    fsync_dir(data_dir)
    return _outcome(data_dir, rid, rec.state, new, index, old_wal=old_wal)



# -- `zero restore` ------------------------------------------------------------------------------
def add_restore_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "restore", help="create a new single-zero cluster's data dir from a backup",
        description="Create the data dir of a new single-zero cluster from a backup (`zero admin backup`): "
                    "a new cluster id, this zero alone (the old zeros recorded as removed), every data-node "
                    "member, group and tablet kept, leases continued above max(backed-up maximum + margin, "
                    "unix-ms x 1000). Then run `zero run --data-dir DIR` and join other zeros with --peer. "
                    "Exit codes: 0 ok, 1 refused (bad backup, data dir in use), 2 usage.")
    p.add_argument("--from", dest="source", required=True, metavar="FILE", help="the backup file")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="a new, empty data dir")
    p.add_argument("--raft-id", required=True, type=int, metavar="N", help="this zero's raft id in the new cluster")
    p.add_argument("--lease-margin", type=int, default=LEASE_MARGIN, metavar="N",
                   help=f"ids and timestamps skipped above the backed-up maxima (default {LEASE_MARGIN:,})")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def run_restore(ns: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`zero restore`; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    if ns.raft_id < 1 or ns.lease_margin < 0:
        err.write("zero restore: --raft-id must be at least 1 and --lease-margin not negative\n")
        return 2
    try:
        o = restore(ns.source, ns.data_dir, ns.raft_id, margin=ns.lease_margin)
    except (ZeroError, StorageError, OSError) as e:
        err.write(f"zero restore: refused: {e}\n")
        return 1
    if ns.json:
        doc = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
        doc["removed_zeros"] = list(o.removed_zeros)
        out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        out.write(o.text() + f"\nnext: zero run --data-dir {ns.data_dir} --my HOST:PORT ...; "
                  "then join other zeros with --peer\n")
    return 0
