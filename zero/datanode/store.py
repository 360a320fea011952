"""The reference data node's storage: key/values per tablet, in memory or in a data dir.

Layout of a data dir (everything is rebuilt from it on start):

    <dir>/tablets/<hex of the tablet name>.log   one JSON line per write, base64 key/value
    <dir>/moves.json                             per tablet: newest move id seen, dropped id

A tablet's log is appended (and fsynced) on every Put; a tablet that arrives by a move
is written whole to a temporary file that replaces the log atomically (rename), so a
crash leaves either the old copy or the new one. A torn last line (a crash mid-append of
a write that was therefore never acknowledged) is ignored on replay.

Deliberately simple: no compaction of overwritten keys, one file per tablet. This is the
example users copy, not a database.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TabletStore", "MoveIds"]


@dataclass(slots=True)
class MoveIds:
    """What a data node remembers about the moves of one tablet.

    newest:  the highest move id any move call for this tablet carried; a call with a
             lower id comes from a deposed leader or a finished move and is refused.
    dropped: the highest move id whose copy was dropped here; chunks of that move (or an
             older one) arriving late are refused, so a dropped copy never comes back.
    """

    newest: int = 0
    dropped: int = 0


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"))


class TabletStore:
    """Tablets of key/values; persisted under ``data_dir`` when one is given."""

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = data_dir
        self._tablets: dict[str, dict[bytes, bytes]] = {}
        self._sizes: dict[str, int] = {}
        self.moves: dict[str, MoveIds] = {}
        self._lock = threading.Lock()
        if data_dir:
            os.makedirs(os.path.join(data_dir, "tablets"), exist_ok=True)
            self._load()

    # -- reads -------------------------------------------------------------------------------
    def get(self, tablet: str, key: bytes) -> bytes | None:
        return self._tablets.get(tablet, {}).get(key)

    def has(self, tablet: str) -> bool:
        return tablet in self._tablets

    def items(self, tablet: str) -> list[tuple[bytes, bytes]]:
        """A copy of the tablet's pairs (the caller may stream it while writes go on)."""
        return list(self._tablets.get(tablet, {}).items())

    def sizes(self) -> dict[str, int]:
        """Bytes of keys and values per tablet: what the node reports to zero."""
        return dict(self._sizes)

    def tablets(self) -> list[str]:
        return sorted(self._tablets)

    def move_ids(self, tablet: str) -> MoveIds:
        return self.moves.setdefault(tablet, MoveIds())

    # -- writes --------------------------------------------------------------------------------
    def put(self, tablet: str, key: bytes, value: bytes) -> None:
        """Store one pair, durably when there is a data dir (the append is fsynced before
        the memory copy changes, so a write is visible only once it is on disk)."""
        if not self.data_dir:
            self._set(tablet, key, value)
            return
        line = json.dumps({"k": _b64(key), "v": _b64(value)}) + "\n"
        # Callers may run puts in worker threads: the file and the memory copy must see
        # the writes in the same order.
        with self._lock:
            with open(self._path(tablet), "a", encoding="ascii") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._set(tablet, key, value)

    def install(self, tablet: str, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Replace the tablet with a received copy (atomically on disk)."""
        data = dict(pairs)
        if self.data_dir:
            path = self._path(tablet)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="ascii") as f:
                for k, v in data.items():
                    f.write(json.dumps({"k": _b64(k), "v": _b64(v)}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._sync_dir()
        self._tablets[tablet] = data
        self._sizes[tablet] = sum(len(k) + len(v) for k, v in data.items())

    def drop(self, tablet: str) -> bool:
        """Forget the tablet's data; False when there was none."""
        had = self._tablets.pop(tablet, None) is not None
        self._sizes.pop(tablet, None)
        if self.data_dir:
            try:
                os.unlink(self._path(tablet))
                had = True
            except FileNotFoundError:
                pass
            self._sync_dir()
        return had

    def save_move_ids(self) -> None:
        """Persist every tablet's MoveIds (before a move call is answered)."""
        if not self.data_dir:
            return
        path = os.path.join(self.data_dir, "moves.json")
        body = {t: {"newest": m.newest, "dropped": m.dropped} for t, m in sorted(self.moves.items())}
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    # -- internals -------------------------------------------------------------------------------
    def _set(self, tablet: str, key: bytes, value: bytes) -> None:
        t = self._tablets.setdefault(tablet, {})
        old = t.get(key)
        t[key] = value
        delta = len(value) - (len(old) if old is not None else -len(key))
        self._sizes[tablet] = self._sizes.get(tablet, 0) + delta

    def _path(self, tablet: str) -> str:
        assert self.data_dir
        return os.path.join(self.data_dir, "tablets", tablet.encode("utf-8").hex() + ".log")

    def _sync_dir(self) -> None:
        assert self.data_dir
        fd = os.open(os.path.join(self.data_dir, "tablets"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load(self) -> None:
        assert self.data_dir
        tdir = os.path.join(self.data_dir, "tablets")
        for name in sorted(os.listdir(tdir)):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(tdir, name))  # an install that never completed
                continue
            if not name.endswith(".log"):
                continue
            tablet = bytes.fromhex(name[:-4]).decode("utf-8")
            self._tablets[tablet] = {}
            self._sizes[tablet] = 0
            path = os.path.join(tdir, name)
            good = 0
            with open(path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # torn by a crash mid-append: that write was never acknowledged
                    rec = json.loads(line)
                    self._set(tablet, _unb64(rec["k"]), _unb64(rec["v"]))
                    good += len(line)
            if good != os.path.getsize(path):
                os.truncate(path, good)  # so the next append starts on a line of its own
        try:
            with open(os.path.join(self.data_dir, "moves.json"), encoding="utf-8") as f:
                body = json.load(f)
        except FileNotFoundError:
            body = {}
        self.moves = {t: MoveIds(int(m["newest"]), int(m["dropped"])) for t, m in body.items()}
