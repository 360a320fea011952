"""The reference data node's storage: versioned key/values per tablet (MVCC), in memory
or in a data dir.

Every key holds versions by commit_ts, oldest first. A read at read_ts sees the newest
version with commit_ts <= read_ts; commit_ts 0 marks a value written before versions
existed (a data dir of an older release), visible at every read_ts. Garbage collection
below safe_ts keeps, per key, every version above safe_ts and the newest at or below it:
a read at any read_ts >= safe_ts still finds what it would have found (reads below
safe_ts are refused by the server).

Layout of a data dir (everything is rebuilt from it on start):

    <dir>/tablets/<hex of the tablet name>.log   one JSON line per version: base64 key
                                                 and value, "t": commit_ts (absent: 0)
    <dir>/moves.json                             per tablet: newest move id seen, dropped id
    <dir>/floor.json                             the safe_ts below which versions may be gone
    <dir>/pending.log                            prewritten writes (zero/datanode/pending.py)

A tablet's log is appended (and fsynced) before the versions are acknowledged; a tablet
that arrives by a move, and a log rewritten without its collected versions, is written
whole to a temporary file that replaces the log atomically (rename), so a crash leaves
either the old copy or the new one. A torn last line (a crash mid-append of a write that
was therefore never acknowledged) is ignored on replay. File work may run in worker
threads (one lock orders it); the memory copy is changed by the caller's thread only.

Deliberately simple: one file per tablet, rewritten once it holds twice as many lines as
live versions. This is the example users copy, not a database.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from bisect import bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["TabletStore", "MoveIds", "Version"]

# A version as the node writes it: (tablet, key, commit_ts, value).
Version = tuple[str, bytes, int, bytes]


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


def _line(key: bytes, ts: int, value: bytes) -> str:
    rec: dict[str, object] = {"k": _b64(key), "v": _b64(value)}
    if ts:
        rec["t"] = ts
    return json.dumps(rec) + "\n"


def _ts(v: tuple[int, bytes]) -> int:
    return v[0]


def _collect(versions: list[tuple[int, bytes]], safe_ts: int) -> list[tuple[int, bytes]]:
    """`versions` (oldest first) without those hidden below safe_ts: every version above
    it and the newest at or below it stay."""
    i = bisect_right(versions, safe_ts, key=_ts)
    return versions[i - 1:] if i > 1 else versions


class TabletStore:
    """Tablets of versioned key/values; persisted under ``data_dir`` when one is given."""

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = data_dir
        # tablet -> key -> [(commit_ts, value), ...] oldest first
        self._tablets: dict[str, dict[bytes, list[tuple[int, bytes]]]] = {}
        self._sizes: dict[str, int] = {}  # bytes of keys and newest values
        self._stacked: dict[str, set[bytes]] = {}  # keys with more than one version (what GC looks at)
        self._lines: dict[str, int] = {}  # lines in each tablet's log (for rewriting it)
        self.moves: dict[str, MoveIds] = {}
        self.floor = 0  # versions hidden below this may have been collected: no read below it
        self._lock = threading.Lock()  # file work, from worker threads
        if data_dir:
            os.makedirs(os.path.join(data_dir, "tablets"), exist_ok=True)
            self._load()

    # -- reads -------------------------------------------------------------------------------
    def get(self, tablet: str, key: bytes, read_ts: int | None = None) -> bytes | None:
        """The value as of read_ts (None: the newest version)."""
        v = self.get_version(tablet, key, read_ts)
        return v[1] if v is not None else None

    def get_version(self, tablet: str, key: bytes, read_ts: int | None = None) -> tuple[int, bytes] | None:
        """(commit_ts, value) of the newest version at or below read_ts (None: newest)."""
        versions = self._tablets.get(tablet, {}).get(key)
        if not versions:
            return None
        if read_ts is None:
            return versions[-1]
        i = bisect_right(versions, read_ts, key=_ts)
        return versions[i - 1] if i else None

    def has(self, tablet: str) -> bool:
        return tablet in self._tablets

    def items(self, tablet: str) -> list[tuple[bytes, bytes]]:
        """The tablet's keys with their newest values (a copy)."""
        return [(k, vs[-1][1]) for k, vs in self._tablets.get(tablet, {}).items()]

    def versions(self, tablet: str) -> list[tuple[bytes, int, bytes]]:
        """Every version the tablet keeps, (key, commit_ts, value), a copy (a move streams
        it while writes go on)."""
        return [(k, ts, v) for k, vs in self._tablets.get(tablet, {}).items() for ts, v in vs]

    def sizes(self) -> dict[str, int]:
        """Bytes of keys and newest values per tablet: what the node reports to zero."""
        return dict(self._sizes)

    def tablets(self) -> list[str]:
        return sorted(self._tablets)

    def move_ids(self, tablet: str) -> MoveIds:
        return self.moves.setdefault(tablet, MoveIds())

    # -- writes --------------------------------------------------------------------------------
    def put(self, tablet: str, key: bytes, value: bytes, ts: int = 0) -> None:
        """Store one version, durably when there is a data dir (appended and fsynced
        before the memory copy changes)."""
        self.persist([(tablet, key, ts, value)])
        self.add([(tablet, key, ts, value)])

    def persist(self, versions: Sequence[Version]) -> None:
        """Append versions to their tablets' logs, one fsync per tablet (no memory change;
        any thread). A version already there is written again: replay keeps one."""
        if not self.data_dir or not versions:
            return
        by_tablet: dict[str, list[str]] = {}
        for tablet, key, ts, value in versions:
            by_tablet.setdefault(tablet, []).append(_line(key, ts, value))
        with self._lock:
            for tablet, lines in by_tablet.items():
                with open(self._path(tablet), "a", encoding="ascii") as f:
                    f.write("".join(lines))
                    f.flush()
                    os.fsync(f.fileno())
                self._lines[tablet] = self._lines.get(tablet, 0) + len(lines)

    def add(self, versions: Iterable[Version]) -> None:
        """Put versions into the memory copy (the caller's thread; idempotent)."""
        for tablet, key, ts, value in versions:
            self._set(tablet, key, ts, value)

    def install(self, tablet: str, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Replace the tablet with a received copy of unversioned pairs (commit_ts 0)."""
        self.install_versions(tablet, [(k, 0, v) for k, v in pairs])

    def install_versions(self, tablet: str, versions: Iterable[tuple[bytes, int, bytes]]) -> None:
        """Replace the tablet with a received copy, (key, commit_ts, value) versions
        (atomically on disk)."""
        data: dict[bytes, list[tuple[int, bytes]]] = {}
        for k, ts, v in versions:
            vs = data.setdefault(k, [])
            i = bisect_right(vs, ts, key=_ts)
            if i and vs[i - 1][0] == ts:
                vs[i - 1] = (ts, v)
            else:
                vs.insert(i, (ts, v))
        if self.data_dir:
            with self._lock:
                self._rewrite(tablet, data)
        self._tablets[tablet] = data
        self._sizes[tablet] = sum(len(k) + len(vs[-1][1]) for k, vs in data.items())
        self._stacked[tablet] = {k for k, vs in data.items() if len(vs) > 1}

    def drop(self, tablet: str) -> bool:
        """Forget the tablet's data; False when there was none."""
        had = self._tablets.pop(tablet, None) is not None
        self._sizes.pop(tablet, None)
        self._stacked.pop(tablet, None)
        if self.data_dir:
            with self._lock:
                self._lines.pop(tablet, None)
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

    # -- garbage collection ------------------------------------------------------------------------
    def raise_floor(self, safe_ts: int) -> None:
        """From now on versions hidden below safe_ts may be collected (here or in a copy
        received): persisted before anything is collected on disk."""
        if safe_ts <= self.floor:
            return
        self.floor = safe_ts
        if self.data_dir:
            path = os.path.join(self.data_dir, "floor.json")
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"safe_ts": safe_ts}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(path + ".tmp", path)

    def collect(self, safe_ts: int) -> int:
        """Drop the versions hidden below safe_ts from memory; how many went."""
        gone = 0
        for tablet, keys in self._stacked.items():
            data = self._tablets.get(tablet, {})
            for k in list(keys):
                vs = data.get(k)
                if vs is None:
                    keys.discard(k)
                    continue
                kept = _collect(vs, safe_ts)
                if len(kept) != len(vs):
                    gone += len(vs) - len(kept)
                    data[k] = kept
                if len(kept) <= 1:
                    keys.discard(k)
        return gone

    def bloated(self) -> list[str]:
        """Tablets whose log holds over twice as many lines as live versions (and 1,000
        more): worth rewriting."""
        out = []
        for tablet, n in self._lines.items():
            live = sum(len(vs) for vs in self._tablets.get(tablet, {}).values())
            if n > 2 * live + 1000:
                out.append(tablet)
        return out

    def rewrite(self, tablet: str, safe_ts: int) -> None:
        """Rewrite a tablet's log without the versions hidden below safe_ts, from the log
        itself (any thread: it reads no memory copy, and appends wait for it)."""
        if not self.data_dir:
            return
        with self._lock:
            path = self._path(tablet)
            if not os.path.exists(path):
                return
            data: dict[bytes, list[tuple[int, bytes]]] = {}
            for k, ts, v in self._replay(path):
                vs = data.setdefault(k, [])
                i = bisect_right(vs, ts, key=_ts)
                if i and vs[i - 1][0] == ts:
                    vs[i - 1] = (ts, v)
                else:
                    vs.insert(i, (ts, v))
            self._rewrite(tablet, {k: _collect(vs, safe_ts) for k, vs in data.items()})

    # -- internals -------------------------------------------------------------------------------
    def _set(self, tablet: str, key: bytes, ts: int, value: bytes) -> None:
        t = self._tablets.setdefault(tablet, {})
        vs = t.get(key)
        if vs is None:
            t[key] = [(ts, value)]
            self._sizes[tablet] = self._sizes.get(tablet, 0) + len(key) + len(value)
            return
        old_newest = vs[-1][1]
        i = bisect_right(vs, ts, key=_ts)
        if i and vs[i - 1][0] == ts:
            vs[i - 1] = (ts, value)
        else:
            insort(vs, (ts, value), key=_ts)
            self._stacked.setdefault(tablet, set()).add(key)
        self._sizes[tablet] = self._sizes.get(tablet, 0) + len(vs[-1][1]) - len(old_newest)

    def _rewrite(self, tablet: str, data: dict[bytes, list[tuple[int, bytes]]]) -> None:
        """Replace the tablet's log with `data` (the file lock is held)."""
        path = self._path(tablet)
        tmp = path + ".tmp"
        n = 0
        with open(tmp, "w", encoding="ascii") as f:
            for k, vs in data.items():
                for ts, v in vs:
                    f.write(_line(k, ts, v))
                    n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._sync_dir()
        self._lines[tablet] = n

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

    @staticmethod
    def _replay(path: str) -> list[tuple[bytes, int, bytes]]:
        """The versions of a tablet log; a torn last line is cut off the file."""
        out = []
        good = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # torn by a crash mid-append: that write was never acknowledged
                rec = json.loads(line)
                out.append((_unb64(rec["k"]), int(rec.get("t", 0)), _unb64(rec["v"])))
                good += len(line)
        if good != os.path.getsize(path):
            os.truncate(path, good)  # so the next append starts on a line of its own
        return out

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
            recs = self._replay(os.path.join(tdir, name))
            for k, ts, v in recs:
                self._set(tablet, k, ts, v)
            self._lines[tablet] = len(recs)
        try:
            with open(os.path.join(self.data_dir, "moves.json"), encoding="utf-8") as f:
                body = json.load(f)
        except FileNotFoundError:
            body = {}
        self.moves = {t: MoveIds(int(m["newest"]), int(m["dropped"])) for t, m in body.items()}
        try:
            with open(os.path.join(self.data_dir, "floor.json"), encoding="utf-8") as f:
                self.floor = int(json.load(f)["safe_ts"])
        except FileNotFoundError:
            pass
