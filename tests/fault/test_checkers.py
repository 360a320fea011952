"""The checkers catch what they claim to: synthetic histories with one planted violation
each (a checker that never fails proves nothing)."""

from __future__ import annotations

import json

from . import checkers
from .history import FAIL, INFO, OK, History, Op


def op(f: str, t0: float, t1: float, typ: str = OK, process: str = "c0", args=None, **value) -> Op:
    return Op(process=process, f=f, invoke=t0, complete=t1, type=typ, args=args or {}, value=value)


def test_unique_ids_overlap_and_malformed() -> None:
    good = [op("uid", 0, 1, start=1, end=10, args={"count": 10}), op("uid", 0, 1, start=11, end=11)]
    assert checkers.unique_ids(good) == []
    assert checkers.unique_ids(good + [op("uid", 2, 3, start=10, end=12)])
    assert checkers.unique_ids([op("ts", 0, 1, start=5, end=4)])
    # UIDs and timestamps are separate counters; info ops are not evidence.
    assert checkers.unique_ids([op("uid", 0, 1, start=1, end=5), op("ts", 0, 1, start=1, end=5),
                                op("uid", 0, 1, INFO, start=1, end=5)]) == []


def test_timestamps_realtime_order() -> None:
    a = op("ts", 0.0, 1.0, start=10, end=10)
    later_small = op("ts", 1.5, 2.0, start=9, end=9)
    concurrent_small = op("ts", 0.5, 2.0, start=5, end=5)  # overlaps a: any order is fine
    assert checkers.timestamps_realtime([a, concurrent_small]) == []
    assert checkers.timestamps_realtime([a, op("ts", 1.5, 2.0, start=11, end=12)]) == []
    got = checkers.timestamps_realtime([a, later_small])
    assert len(got) == 1 and "real-time" in got[0]
    # Equal is a violation too (strictly increasing).
    assert checkers.timestamps_realtime([a, op("ts", 1.1, 1.2, start=10, end=10)])


def test_claims_one_owner_and_final_state() -> None:
    a = op("claim", 0, 1, args={"tablet": "t1", "group": 1}, group=1)
    b = op("claim", 2, 3, args={"tablet": "t1", "group": 2}, group=1)
    assert checkers.claims([a, b], {"t1": 1}) == []
    assert checkers.claims([a, op("claim", 2, 3, args={"tablet": "t1", "group": 0}, group=2)], {"t1": 1})
    assert checkers.claims([a], {"t1": 2})                      # final state contradicts the answer
    assert checkers.claims([a], {})                             # acknowledged claim lost
    assert checkers.claims([op("claim", 0, 1, args={"tablet": "t2", "group": 1}, group=0)], {})
    assert checkers.claims([a, op("claim", 2, 3, args={"tablet": "t1", "group": 0}, group=2)],
                           {"t1": 2}, moved=["t1"]) == []


def test_membership_acknowledged_connects() -> None:
    c = op("connect", 0, 1, args={"addr": "a:1"}, id=7, group=1)
    assert checkers.membership([c], {7: (1, "a:1")}) == []
    assert checkers.membership([c], {})
    assert checkers.membership([c], {7: (2, "a:1")})
    assert checkers.membership([op("connect", 0, 1, INFO, args={"addr": "b:1"})], {}) == []


def test_watchers_grow_and_end_at_final() -> None:
    w = [op("watch", 1, 1, process="w0", version=3, full=True), op("watch", 2, 2, process="w0", version=5, full=False)]
    assert checkers.watchers(w, 5) == []
    assert checkers.watchers(w, 6)                                        # never caught up
    assert checkers.watchers(w + [op("watch", 3, 3, process="w0", version=4, full=True)], 5)  # went back
    assert checkers.watchers(w, 4)                                        # beyond the final state


def test_history_dump_round_trips(tmp_path) -> None:
    h = History(seed=42, name="t")
    o = h.begin("c0", "uid", count=1)
    h.end(o, OK, {"start": 1, "end": 1})
    h.end(h.begin("c0", "ts"), FAIL, error="x")
    p = h.dump(tmp_path)
    data = json.loads(p.read_text())
    assert data["seed"] == 42 and len(data["ops"]) == 2 and data["ops"][0]["value"] == {"start": 1, "end": 1}
    h.write_jsonl(tmp_path / "h.jsonl")
    assert History.read_jsonl(tmp_path / "h.jsonl")[1].error == "x"
    assert h.counts() == {"ts:fail": 1, "uid:ok": 1}
