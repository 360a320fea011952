"""The checkers catch what they claim to: synthetic histories with one planted violation
each (a checker that never fails proves nothing)."""

from __future__ import annotations

import json
import os
import signal

from procs import ProcCluster
from support import until

from . import checkers
from .history import FAIL, INFO, OK, History, Op
from .loopback import FLAGS, LoopbackCluster


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


# -- liveness: a run that checked nothing must fail ---------------------------------------------------

def _healthy(n: int = 60) -> list[Op]:
    """A workload history every kind of which got n ok answers (and a few indeterminate)."""
    out = []
    for i in range(n):
        t = float(i)
        out += [op("uid", t, t + 0.1, start=100 * i + 1, end=100 * i + 1),
                op("ts", t, t + 0.1, args={"via": "Timestamps"}, start=2 * i + 1, end=2 * i + 1),
                op("ts", t, t + 0.1, args={"via": "AssignIds"}, start=2 * i + 2, end=2 * i + 2),
                op("claim", t, t + 0.1, args={"tablet": "t1", "group": 1}, group=1),
                op("connect", t, t + 0.1, args={"addr": f"a{i}:1"}, id=i + 10, group=1)]
        out += [op("watch", t, t, process=w, version=i + 1, full=False) for w in ("w0", "w1")]
    out += [op(f, 0, 1, INFO, args={"via": "AssignIds"} if f == "ts" else {}) for f in ("uid", "ts", "claim")]
    return out


def test_liveness_passes_a_healthy_run() -> None:
    assert checkers.liveness(_healthy(), checkers.LEASE_MINIMUMS, watchers=["w0", "w1"]) == []


def test_liveness_catches_starved_timestamps() -> None:
    """Planted: every Timestamps call ended UNAVAILABLE (AssignIds(TIMESTAMP) still worked):
    all other checkers pass such a history, since they only read ok answers."""
    ops = [o for o in _healthy() if not (o.f == "ts" and o.args.get("via") == "Timestamps")]
    ops += [_err(op("ts", i, i + 0.01, INFO, args={"via": "Timestamps"}), "StatusCode.UNAVAILABLE: no leader")
            for i in range(200)]
    assert checkers.unique_ids(ops) == [] and checkers.timestamps_realtime(ops) == []
    got = checkers.liveness(ops, checkers.LEASE_MINIMUMS, watchers=["w0", "w1"])
    assert got and all(v.startswith(("'ts via Timestamps'", "'ts'")) for v in got), got
    assert any(v.startswith("'ts via Timestamps' starved: 0 ok") and "UNAVAILABLE" in v for v in got), got
    assert any(v.startswith("'ts' unanswered while no fault was active") for v in got), got  # 200 of 262
    # Every timestamp call failing, both ways, names "ts" itself.
    no_ts = [o for o in ops if o.f != "ts"] + [op("ts", 0, 1, FAIL, args={"via": "AssignIds"})]
    got = checkers.liveness(no_ts, {"ts": 1})
    assert got == ["'ts' starved: 0 ok answers, fewer than the 1 a healthy run gets at the least "
                   "(ok 0, fail 1, indeterminate 0)"], got


def _err(o: Op, error: str) -> Op:
    o.error = error
    return o


def test_liveness_indeterminate_shares_outside_and_during_faults() -> None:
    """Enough ok answers, but 40 % of the claims went unanswered while no fault was active:
    starved. The same calls during a fault (or within SETTLE s after it healed) are what
    faults do; over all calls only more than MAX_INDETERMINATE_ALL is too many."""
    late = [_err(op("claim", 100 + i / 10, 100.1 + i / 10, INFO), "StatusCode.DEADLINE_EXCEEDED: x")
            for i in range(40)]
    ops = _healthy() + late
    got = checkers.liveness(ops, checkers.LEASE_MINIMUMS, watchers=["w0", "w1"])
    assert len(got) == 1 and got[0].startswith("'claim' unanswered while no fault was active: 41 of its 101 calls"), got
    assert "DEADLINE_EXCEEDED" in got[0], got
    fault = (99.0, 103.0)  # the unanswered calls fell in a fault (the last ones within SETTLE after it)
    assert checkers.liveness(ops, checkers.LEASE_MINIMUMS, watchers=["w0", "w1"], faults=[fault]) == []
    assert checkers.liveness(ops, checkers.LEASE_MINIMUMS, faults=[(99.0, 100.5)], settle=0.5)  # 101-104 quiet
    # Mostly unanswered even counting the faults: 241 of 301.
    ops += [_err(op("claim", 100, 101, INFO), "StatusCode.UNAVAILABLE: y") for _ in range(200)]
    got = checkers.liveness(ops, checkers.LEASE_MINIMUMS, watchers=["w0", "w1"], faults=[fault])
    assert len(got) == 1 and got[0].startswith("'claim' mostly unanswered: 241 of its 301 calls (80 %)"), got
    # A call in flight when a fault began is not quiet either.
    hung = [op("uid", 0, 5, INFO)] * 20
    assert checkers.liveness(hung, {"uid": 0}, faults=[(4.0, 4.5)], max_indeterminate_all=1) == []
    assert checkers.liveness(hung, {"uid": 0}, faults=[(5.5, 6)], settle=0, max_indeterminate_all=1)


def test_liveness_catches_a_kind_that_never_ran_and_a_silent_watcher() -> None:
    ops = [o for o in _healthy() if o.f != "connect" and o.process != "w1"]
    got = checkers.liveness(ops, checkers.LEASE_MINIMUMS, watchers=["w0", "w1"])
    assert any(v.startswith("'connect' starved: 0 ok") for v in got), got
    assert "watcher w1 starved: it recorded 0 updates, fewer than 5" in got, got
    assert not any("w0" in v for v in got), got
    # The watchers checker itself no longer passes a watcher that recorded nothing.
    assert checkers.watchers(ops, 60, ["w0", "w1"]) == ["watch: w1 recorded no update at all (final version 60)"]
    assert checkers.watchers(ops, 60, ["w0"]) == []


def test_lease_minimums_follow_the_mix() -> None:
    from .workloads import Mix
    assert checkers.lease_minimums(Mix()) == dict(checkers.LEASE_MINIMUMS)
    m = checkers.lease_minimums(Mix(connect=0, claim=0), clients=2)
    assert set(m) == {"uid", "ts", "ts via Timestamps", "ts via AssignIds"}
    assert m["uid"] == checkers.LEASE_MINIMUMS["uid"] // 2


def test_liveness_catches_moves_that_never_commit() -> None:
    """Planted for the move runs: moves were started (and answered) but none committed."""
    moves = [Op("mover", "move", i, i + 1, OK, {"tablet": "a"}, {"committed": False, "move_id": i})
             for i in range(5)] + [Op("mover", "move", 9, 10, FAIL, {"tablet": "a"}, error="FAILED_PRECONDITION: x")]
    got = checkers.liveness(moves, {"move committed": 1})
    assert len(got) == 1 and got[0].startswith("'move committed' starved: 0 ok"), got
    moves.append(Op("mover", "move", 11, 12, OK, {"tablet": "a"}, {"committed": True, "move_id": 11}))
    assert checkers.liveness(moves, {"move committed": 1}) == []


def test_queued_answers_catch_a_long_pause_that_checked_nothing() -> None:
    """Planted: the leader was paused past the clients' deadline, yet not one timestamp
    call queued at it came back ok - the fault would have checked nothing."""
    pause = Op("nemesis", "pause_leader_long", 0, 4, OK, value={"node": "z1"})
    queued = [op("ts", 0.1 * i, 3.1, INFO, process="queued3", args={"via": "Timestamps"}) for i in range(6)]
    fence = op("ts", 0.5, 0.6, process="queued3-fence", args={"via": "Timestamps"}, start=5, end=5)
    got = checkers.queued_answers([pause, fence, *queued])
    assert len(got) == 1 and "paused past their deadline (1 pauses): 'ts' starved: 0 ok" in got[0], got
    assert "indeterminate 6" in got[0], got
    queued[-1].type, queued[-1].value = OK, {"start": 9, "end": 9}
    assert checkers.queued_answers([pause, fence, *queued]) == []
    assert checkers.queued_answers(queued[:-1]) == []  # no long pause: nothing was queued on purpose
    # The late answer is checked like any other: below a fence obtained before it was sent.
    queued[-1].invoke, queued[-1].value = 0.7, {"start": 4, "end": 4}
    assert checkers.timestamps_realtime([fence, queued[-1]])


def test_unasked_zero_exits_are_caught_and_asked_ones_are_not(tmp_path) -> None:
    """A member that ends by itself or is killed from outside the run is a violation of
    the run (LoopbackCluster.unasked_exits); kill -9, SIGTERM and a restart by the
    nemesis are not. Planted: a zero started with a flag it refuses (exits 2), and a
    running zero killed -9 behind the cluster's back."""
    c = LoopbackCluster(tmp_path, pc=ProcCluster(tmp_path, 3, flags=FLAGS))
    try:
        a, b, d = c.nodes
        a.start("--no-such-flag")
        a.wait_exit(30)
        b.start()
        b.kill9()  # asked: the nemesis's kill
        b.start()
        b.stop()  # asked: SIGTERM
        d.start()
        until(lambda: d.health()[0] != 0, 30, message="zero d serving HTTP")
        os.kill(d.pid, signal.SIGKILL)  # nobody in the run asked
        d.wait_exit(10)
        got = c.unasked_exits()
        assert len(got) == 2, got
        assert got[0].startswith(f"{a.name} (pid ") and "exited with 2, asked by nobody" in got[0]
        assert got[1].startswith(f"{d.name} (pid ") and "exited with -9" in got[1]
        assert c.unasked_exits() == got  # each exit reported once
    finally:
        c.cleanup()
