"""A zero's identity on disk: its raft id, in `<data-dir>/IDENTITY`.

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

__all__ = ["Identity", "load_identity", "save_identity", "IDENTITY_FILE", "FORMAT"]

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
