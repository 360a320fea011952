"""The transactional checkers (txn_checks.py, bank.py, list_append.py) catch what they
claim to: small histories, each checked clean and then with one planted violation."""

from __future__ import annotations

from typing import Any

from . import bank, list_append, txn_checks
from .history import FAIL, INFO, OK, Op


def txn(t0: float, t1: float, typ: str, start: int, *, commit: int = 0, reads: dict[str, Any] | None = None,
        writes: dict[str, Any] | None = None, status: dict[str, Any] | None = None, process: str = "c0",
        f: str = "transfer", **value: Any) -> Op:
    v: dict[str, Any] = {"start_ts": start, "read_ts": start, **value}
    if reads is not None:
        v["reads"] = reads
    if writes is not None:
        v["writes"] = writes
    if typ == OK:
        v["commit_ts"] = commit
    if status is not None:
        v["status"] = status
    return Op(process, f, t0, t1, typ, {}, v)


def stream(since: int, *events: list[Any], process: str = "s0") -> Op:
    return Op(process, "oracle", 0, 1, OK, {"since": since, "zero": 0}, {"since": since, "events": list(events)})


# -- txn_checks -------------------------------------------------------------------------------------
def test_decisions() -> None:
    ok = txn(0, 1, OK, 10, commit=12, status={"commit_ts": 12})
    ab = txn(0, 1, FAIL, 11, reason="CONFLICT", status={"aborted": "CONFLICT"})
    unread = txn(0, 1, FAIL, 13, phase="read", status={"aborted": "CLIENT_ABORT"})
    good = [ok, ab, unread, stream(0, ["c", 10, 12], ["a", 11], ["m", 12])]
    assert txn_checks.decisions(good) == []
    planted = {
        "acknowledged as committed, later aborted": [txn(0, 1, OK, 10, commit=12, status={"aborted": "CONFLICT"})],
        "later 14": [txn(0, 1, OK, 10, commit=12, status={"commit_ts": 14})],
        "later undecided": [txn(0, 1, OK, 10, commit=12, undecided=1)],
        "answered aborted": [txn(0, 1, FAIL, 11, reason="CONFLICT", status={"commit_ts": 15})],
        "never asked to commit": [txn(0, 1, FAIL, 13, phase="read", status={"commit_ts": 15})],
        "two transactions": [ok, txn(2, 3, INFO, 10)],
        "purged": [txn(0, 1, INFO, 16, status={"purged": "gone"})],
        "carried a commit": [ab, stream(0, ["c", 11, 14])],
        "carried an abort": [ok, stream(0, ["a", 10])],
    }
    for what, ops in planted.items():
        got = txn_checks.decisions(ops)
        assert len(got) == 1 and what in got[0], (what, got)
    assert "carried a commit" in txn_checks.decisions([ok, stream(0, ["c", 10, 13])])[0]  # another commit_ts


def test_realtime() -> None:
    w = txn(0, 1, OK, 5, commit=10, writes={"a": 1})
    assert txn_checks.realtime([w, txn(2, 3, OK, 11, commit=12, reads={"a": 1})]) == []
    assert txn_checks.realtime([w, txn(0.5, 3, OK, 9, commit=12, reads={"a": 0})]) == []  # concurrent
    snap = Op("c1", "read", 2, 3, OK, {"kind": "snapshot"}, {"read_ts": 10, "reads": {"a": 1}})
    assert txn_checks.realtime([w, snap]) == []  # a snapshot at exactly the commit_ts sees it
    late = Op("c1", "read", 2, 3, OK, {"kind": "snapshot"}, {"read_ts": 9, "reads": {"a": 0}})
    got = txn_checks.realtime([w, late])
    assert len(got) == 1 and "not visible" in got[0]
    assert txn_checks.realtime([w, txn(2, 3, FAIL, 8, reason="CONFLICT", reads={"a": 0})])


def test_snapshots() -> None:
    w1 = txn(0, 1, OK, 5, commit=10, writes={"a": 1, "b": 1})
    w2 = txn(2, 3, OK, 11, commit=20, writes={"a": 2})
    gone = txn(2, 3, FAIL, 12, reason="CONFLICT", writes={"b": 9}, status={"aborted": "CONFLICT"})
    reads = [txn(4, 5, OK, 15, commit=30, reads={"a": 1, "b": 1}), txn(4, 5, OK, 25, commit=31, reads={"a": 2, "b": 1}),
             txn(4, 5, OK, 3, commit=32, reads={"a": None})]
    assert txn_checks.snapshots([w1, w2, gone, *reads]) == []
    for bad in (txn(4, 5, OK, 15, commit=33, reads={"a": 2}),     # a commit above the snapshot
                txn(4, 5, OK, 25, commit=33, reads={"a": 1}),     # a commit below it missed
                txn(4, 5, OK, 25, commit=33, reads={"b": 9})):    # an aborted write
        got = txn_checks.snapshots([w1, w2, gone, bad])
        assert len(got) == 1 and "snapshots" in got[0], got
    # A transaction whose decision is unknown: reads of its keys above its start_ts are not judged.
    blind = txn(2, 3, INFO, 21, writes={"a": 7})
    assert txn_checks.snapshots([w1, w2, blind, txn(4, 5, OK, 40, commit=41, reads={"a": 7})]) == []
    assert txn_checks.snapshots([w1, w2, blind, txn(4, 5, OK, 19, commit=41, reads={"a": 7})])
    assert txn_checks.snapshots([txn(0, 1, OK, 1, commit=2, reads={"k": []})], empty=[]) == []


def test_first_committer_wins() -> None:
    a = txn(0, 1, OK, 5, commit=10, writes={"k": 1})
    assert txn_checks.first_committer_wins([a, txn(2, 3, OK, 11, commit=12, writes={"k": 2}),
                                            txn(0, 3, OK, 6, commit=13, writes={"j": 2})]) == []
    got = txn_checks.first_committer_wins([a, txn(0, 3, OK, 6, commit=13, writes={"k": 2})])
    assert len(got) == 1 and "overlapping" in got[0]


def test_watermark() -> None:
    c = [txn(0, 1, OK, 5, commit=10), txn(0, 1, OK, 6, commit=11), txn(0, 1, OK, 7, commit=20)]
    good = stream(0, ["s", 3], ["c", 5, 10], ["c", 6, 11], ["m", 15], ["s", 9], ["c", 7, 20], ["m", 20])
    assert txn_checks.watermark([*c, good]) == []
    assert txn_checks.watermark([*c, stream(11, ["m", 15], ["c", 7, 20], ["m", 21])]) == []  # resumed at 11
    planted = {
        "before the commit at 11": stream(0, ["c", 5, 10], ["m", 15], ["c", 6, 11]),
        "after 11": stream(0, ["c", 6, 11], ["c", 5, 10], ["m", 11]),
        "max_assigned went from 15 down to 12": stream(0, ["c", 5, 10], ["c", 6, 11], ["m", 15], ["m", 12]),
        "safe_ts went from 9 down to 8": stream(0, ["s", 9], ["c", 5, 10], ["c", 6, 11], ["s", 8], ["m", 11]),
    }
    for what, s in planted.items():
        got = txn_checks.watermark([*c, s])
        assert got and what in got[0], (what, got)


# -- bank ---------------------------------------------------------------------------------------------
def test_bank_total() -> None:
    def read(bal: dict[str, int | None]) -> Op:
        return Op("c0", "read", 0, 1, OK, {"kind": "txn"}, {"read_ts": 5, "reads": bal})
    assert bank.total([read({"a": 150, "b": 50})], n=2) == []
    assert "not 200" in bank.total([read({"a": 150, "b": 49})], n=2)[0]
    assert "negative" in bank.total([read({"a": 210, "b": -10})], n=2)[0]
    assert "missing" in bank.total([read({"a": 200, "b": None})], n=2)[0]
    assert "found 1 of 2" in bank.total([read({"a": 200})], n=2)[0]


# -- list-append ------------------------------------------------------------------------------------------
def la(t0: float, t1: float, typ: str, start: int, reads: dict[str, list[int]], appends: dict[str, int], *,
       commit: int = 0, **kw: Any) -> Op:
    writes = {k: reads[k] + [v] for k, v in appends.items()}
    return txn(t0, t1, typ, start, commit=commit, reads=reads, writes=writes, appends=appends, f="txn", **kw)


def test_list_append_prefixes_and_aborted_reads() -> None:
    t1 = la(0, 1, OK, 1, {"x": []}, {"x": 1}, commit=2)
    t2 = la(1, 2, OK, 3, {"x": [1]}, {"x": 2}, commit=4)
    r = la(3, 4, OK, 5, {"x": [1, 2]}, {}, commit=6)
    assert list_append.prefixes([t1, t2, r]) == [] and list_append.aborted_reads([t1, t2, r]) == []
    assert "no prefix" in list_append.prefixes([t1, t2, r, la(3, 4, OK, 7, {"x": [2]}, {}, commit=8)])[0]
    assert "twice" in list_append.prefixes([t1, la(3, 4, OK, 7, {"x": [1, 1]}, {}, commit=8)])[0]
    aborted = la(1, 2, FAIL, 9, {"x": [1]}, {"x": 3}, reason="CONFLICT", status={"aborted": "CONFLICT"})
    assert "G1a" in list_append.aborted_reads([t1, aborted, la(3, 4, OK, 10, {"x": [1, 3]}, {}, commit=11)])[0]
    assert "no transaction appended" in list_append.aborted_reads([t1, la(3, 4, OK, 10, {"x": [1, 7]}, {})])[0]
    future = la(5, 6, OK, 12, {"x": [1]}, {"x": 4}, commit=13)
    assert "before the transaction" in list_append.aborted_reads(
        [t1, future, la(3, 4, OK, 10, {"x": [1, 4]}, {}, commit=11)])[0]


def test_list_append_lost_updates_and_fractured_reads() -> None:
    t1 = la(0, 1, OK, 1, {"x": [], "y": []}, {"x": 1, "y": 2}, commit=3)
    t2 = la(0, 1, OK, 4, {"x": [1]}, {"x": 5}, commit=6)
    final = {"x": [1, 5], "y": [2]}
    assert list_append.lost_updates([t1, t2], final) == []
    lost = la(0, 1, OK, 2, {"x": []}, {"x": 9}, commit=7)  # read the list t1 read, committed too
    got = list_append.lost_updates([t1, t2, lost], {"x": [1, 5, 9], "y": [2]})
    assert len(got) == 1 and "same" in got[0]
    assert "missing from the final read" in list_append.lost_updates([t1, t2], {"x": [1], "y": [2]})[0]
    whole = la(4, 5, OK, 8, {"x": [1, 5], "y": [2]}, {}, commit=9)
    assert list_append.fractured([t1, t2, whole]) == []
    torn = la(4, 5, OK, 8, {"x": [1], "y": []}, {}, commit=9)
    got = list_append.fractured([t1, t2, torn])
    assert len(got) == 1 and "some of one transaction's appends" in got[0]
