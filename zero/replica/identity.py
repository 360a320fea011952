"""A zero's identity on disk: its raft id, in `<data-dir>/IDENTITY`, and the other small
files it keeps beside its WAL (the join answer, the lease marker after a WAL repair).

Written once (atomically: temp file, fsync, rename, directory fsync) when a zero first
starts on a data dir; a restart reads it back and keeps its identity (SPEC: `--peer`
is then ignored). The file is one line of JSON with a CRC-32 of its body, so damage is
detected and reported, never silently used.
"""

from __future__ import annotations

import json
import os
import zlib

from raftcore import CorruptionError, StorageError
from raftcore.wal.files import fsync_dir

from zero.errors import ZeroError
from zero.pb import raft_transport_pb2

__all__ = ["Identity", "load_identity", "save_identity", "IDENTITY_FILE", "FORMAT", "JOIN_ANSWER_FILE",
           "LEASE_BUMP_FILE", "save_join_answer", "load_join_answer", "write_marker"]

IDENTITY_FILE = "IDENTITY"
FORMAT = 1


class Identity:
    __slots__ = ("raft_id",)

    def __init__(self, raft_id: int) -> None:
        self.raft_id = raft_id


def load_identity(data_dir: str) -> Identity | None:
    """The identity stored in data_dir, or None for a data dir never used by a zero."""
    path = os.path.join(data_dir, IDENTITY_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"{path}: cannot read identity: {e}") from e
    try:
        doc = json.loads(raw)
        body = doc["body"]
        crc = doc["crc32"]
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptionError(f"{path}: identity file is damaged (not the expected JSON): {e}") from e
    canon = json.dumps(body, sort_keys=True).encode()
    if zlib.crc32(canon) != crc:
        raise CorruptionError(f"{path}: identity file is damaged (CRC mismatch)")
    if body.get("format") != FORMAT:
        raise StorageError(f"{path}: identity format {body.get('format')} is not supported (this zero reads {FORMAT})")
    rid = body.get("raft_id")
    if not isinstance(rid, int) or rid <= 0:
        raise CorruptionError(f"{path}: identity has an invalid raft id {rid!r}")
    return Identity(rid)


def save_identity(data_dir: str, ident: Identity) -> None:
    os.makedirs(data_dir, exist_ok=True)
    body = {"format": FORMAT, "raft_id": ident.raft_id}
    canon = json.dumps(body, sort_keys=True).encode()
    data = json.dumps({"body": body, "crc32": zlib.crc32(canon)}).encode() + b"\n"
    path = os.path.join(data_dir, IDENTITY_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


JOIN_ANSWER_FILE = "JOINED"
LEASE_BUMP_FILE = "LEASES_AFTER_REPAIR"  # present while the lease ceilings still need raising


def write_marker(data_dir: str, name: str, text: str) -> None:
    """A small file written atomically and durably (write, fsync, rename, fsync dir)."""
    path = os.path.join(data_dir, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(data_dir)


def save_join_answer(data_dir: str, resp: raft_transport_pb2.JoinClusterResponse) -> None:
    """Keep the join answer (cluster id, peers) beside IDENTITY: a joiner restarted before
    its state has caught up must still know which cluster it belongs to. Written
    atomically, before IDENTITY, so an IDENTITY of a joiner always has its answer."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, JOIN_ANSWER_FILE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(resp.SerializeToString())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_join_answer(data_dir: str) -> raft_transport_pb2.JoinClusterResponse | None:
    try:
        with open(os.path.join(data_dir, JOIN_ANSWER_FILE), "rb") as f:
            return raft_transport_pb2.JoinClusterResponse.FromString(f.read())
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged answer only matters until the state catches up
        raise ZeroError(f"{data_dir}/{JOIN_ANSWER_FILE} is damaged: {e}") from e
