"""The oracle's replicated state (zero/state/oracle.py): decisions, conflict keys,
safe_ts and purging, snapshots — checked against a naive model on random workloads."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from zero.pb import state_pb2, zero_pb2
from zero.state.machine import ZeroState
from zero.state.oracle import MAX_CONFLICT_KEYS, OracleState, Owner

OWNERS = {"a": Owner(1, False), "b": Owner(2, False), "moving": Owner(1, True)}


def owner_of(name: str) -> Owner | None:
    return OWNERS.get(name)


def req(start_ts: int, *keys: int, writes: tuple[tuple[str, int], ...] = (), abort: bool = False
        ) -> zero_pb2.CommitRequest:
    return zero_pb2.CommitRequest(start_ts=start_ts, conflict_keys=list(keys), abort=abort,
                                  writes=[zero_pb2.TxnWrite(predicate=p, group_id=g) for p, g in writes])


def decision(r: zero_pb2.CommitResponse) -> tuple[int, int, bool, int, int]:
    """What a response decides (the message may say more the first time)."""
    return r.start_ts, r.commit_ts, r.aborted, r.reason, r.code


class Oracle:
    """OracleState fed as the leader feeds it: batches with increasing slots."""

    def __init__(self, slot: int = 100) -> None:
        self.state = OracleState()
        self.slot = slot

    def decide(self, *txns: zero_pb2.CommitRequest) -> list[zero_pb2.CommitResponse]:
        first = self.slot + 1
        self.slot += len(txns)
        return self.state.decide(state_pb2.DecideTxns(txns=list(txns), first_commit_ts=first), owner_of)

    def one(self, txn: zero_pb2.CommitRequest) -> zero_pb2.CommitResponse:
        return self.decide(txn)[0]


def test_overlapping_transactions_on_one_key_exactly_one_commits() -> None:
    o = Oracle()
    a, b = o.decide(req(10, 7), req(11, 7))
    assert a.commit_ts == 101 and not a.aborted and a.code == 0
    assert b.aborted and b.reason == zero_pb2.CONFLICT and b.commit_ts == 0
    # Started after the commit: no conflict.
    c = o.one(req(102, 7))
    assert c.commit_ts > 102 and not c.aborted


def test_disjoint_and_read_only_transactions_commit() -> None:
    o = Oracle()
    rs = o.decide(req(10, 1), req(11, 2), req(12))
    assert [r.aborted for r in rs] == [False, False, False]
    assert [r.commit_ts for r in rs] == [101, 102, 103]


def test_a_decision_is_final_and_repeats() -> None:
    o = Oracle()
    first = o.one(req(10, 1))
    again = o.decide(req(10, 1), req(10, 1, abort=True))
    assert [decision(r) for r in again] == [decision(first)] * 2
    aborted = o.one(req(20, 1))  # conflicts with the commit at 101
    assert aborted.reason == zero_pb2.CONFLICT
    assert decision(o.one(req(20, 99))) == decision(aborted)  # another key set changes nothing: decided
    assert decision(o.state.status(10)) == decision(first) and decision(o.state.status(20)) == decision(aborted)
    undecided = o.state.status(30)
    assert undecided.commit_ts == 0 and not undecided.aborted and undecided.code == 0


def test_reasons_in_the_specified_order() -> None:
    o = Oracle()
    o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=50))
    o.one(req(60, 5))  # commits at 101: every later start_ts below 101 conflicts on key 5
    # TOO_OLD before everything else
    r = o.one(req(40, 5, writes=(("nobody", 1), ("moving", 1))))
    assert r.reason == zero_pb2.TOO_OLD and "safe_ts 50" in r.message
    # WRONG_GROUP before TABLET_MOVING and CONFLICT, whichever write it is
    r = o.one(req(70, 5, writes=(("moving", 1), ("b", 1))))
    assert r.reason == zero_pb2.WRONG_GROUP and "owned by group 2" in r.message
    r = o.one(req(71, writes=(("nobody", 1),)))
    assert r.reason == zero_pb2.WRONG_GROUP and "not owned by any group" in r.message
    r = o.one(req(72, writes=(("a", 3),)))
    assert r.reason == zero_pb2.WRONG_GROUP
    # TABLET_MOVING before CONFLICT
    r = o.one(req(73, 5, writes=(("moving", 1),)))
    assert r.reason == zero_pb2.TABLET_MOVING
    r = o.one(req(74, 5, writes=(("a", 1),)))
    assert r.reason == zero_pb2.CONFLICT
    # the client's own abort
    r = o.one(req(75, 6, abort=True))
    assert r.reason == zero_pb2.CLIENT_ABORT
    assert o.one(req(106, 6, writes=(("a", 1), ("b", 2)))).commit_ts > 0


def test_bad_requests_are_refused_and_decide_nothing() -> None:
    o = Oracle()
    zero_ts, too_new, too_many = o.decide(req(0), req(10_000), req(10, *range(MAX_CONFLICT_KEYS + 1)))
    assert zero_ts.code == too_new.code == too_many.code == 3  # INVALID_ARGUMENT
    assert "above every timestamp" in too_new.message and "100,000" in too_many.message
    assert o.state.decisions == 0 and o.state.conflict_keys == 0
    assert o.one(req(10, 1)).commit_ts > 0  # still decidable


def test_a_batch_from_below_the_last_slot_is_refused_whole() -> None:
    o = Oracle()
    o.decide(req(10, 1), req(11, 2))
    stale = o.state.decide(state_pb2.DecideTxns(txns=[req(12, 3), req(10, 1)], first_commit_ts=102), owner_of)
    assert [r.code for r in stale] == [14, 14]  # UNAVAILABLE: retry
    assert o.state.status(12).commit_ts == 0 and o.state.last_slot == 102


def test_safe_ts_purges_keys_and_decisions() -> None:
    o = Oracle()
    committed = o.one(req(10, 1))  # commit_ts 101
    o.one(req(11, 1))              # CONFLICT, slot 102
    o.decide(*[req(50 + i, 1000 + i) for i in range(10)])  # commits 103..112
    assert o.state.conflict_keys == 11
    o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=105, purge_below=102))
    assert o.state.conflict_keys == 7  # keys written at 101, 103, 104, 105 are gone
    assert o.state.status(10).code == 9  # purged: FAILED_PRECONDITION, never another decision
    assert o.one(req(10, 1)).code == 9
    assert o.state.status(11).reason == zero_pb2.CONFLICT  # slot 102 is kept
    # Undecided below safe_ts but above the purge point: TOO_OLD
    assert o.one(req(104, 2)).reason == zero_pb2.TOO_OLD
    # Lower values change nothing; purge_below never passes safe_ts.
    o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=3, purge_below=1))
    assert o.state.safe_ts == 105 and o.state.purged_below == 102
    o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=106, purge_below=10**9))
    assert o.state.purged_below == 106
    assert committed.commit_ts == 101


def test_commits_after_in_commit_ts_order() -> None:
    o = Oracle()
    o.decide(req(10, 1), req(11, 1), req(12, 2), req(13, 3, abort=True), req(14, 4))
    assert [(r.start_ts, r.commit_ts) for r in o.state.commits_after(0)] == [(10, 101), (12, 103), (14, 105)]
    assert [r.commit_ts for r in o.state.commits_after(103)] == [105]
    assert list(o.state.commits_after(105)) == []


def test_snapshot_round_trip_and_corruption() -> None:
    o = Oracle()
    for i in range(50):
        o.decide(req(o.slot, i % 7, 100 + i), req(o.slot - 1, i % 5, abort=i % 3 == 0))
    o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=130, purge_below=120))
    snap = o.state.to_proto()
    assert len(snap.keys) > 10 and len(snap.start_ts) > 50 and 0 in snap.commit_ts
    back = OracleState.from_proto(state_pb2.OracleSnapshot.FromString(snap.SerializeToString()))
    assert back.to_proto() == snap
    for ts in range(0, 250):
        assert back.status(ts) == o.state.status(ts)
    assert list(back.commits_after(0)) == list(o.state.commits_after(0))
    # Both continue identically.
    nxt = state_pb2.DecideTxns(txns=[req(150, 3), req(151, 101)], first_commit_ts=o.slot + 1)
    assert back.decide(nxt, owner_of) == o.state.decide(nxt, owner_of)

    bad = state_pb2.OracleSnapshot()
    bad.CopyFrom(snap)
    del bad.reason[-1]
    with pytest.raises(ValueError, match="decision arrays"):
        OracleState.from_proto(bad)
    bad.CopyFrom(snap)
    bad.key_commit_ts.reverse()
    with pytest.raises(ValueError, match="increasing"):
        OracleState.from_proto(bad)


@pytest.mark.parametrize("seed", range(20))
def test_matches_a_naive_model(seed: int) -> None:
    """Snapshot isolation, first committer wins: a transaction commits iff no commit
    with commit_ts > start_ts shares a key with it (and it is not too old)."""
    rng = random.Random(seed)
    o = Oracle(slot=0)
    commits: list[tuple[int, set[int]]] = []  # (commit_ts, keys) of every commit
    decided: dict[int, zero_pb2.CommitResponse] = {}
    handed = 0
    safe = 0
    for _ in range(300):
        txns = []
        for _ in range(rng.randint(1, 4)):
            if decided and rng.random() < 0.1:
                start = rng.choice(list(decided))  # a retry
            else:
                start = rng.randint(max(1, handed - 20), handed + 1) if handed else 1
            txns.append(req(start, *rng.sample(range(30), rng.randint(0, 3))))
        first = o.slot + 1
        got = o.decide(*txns)
        for i, (t, r) in enumerate(zip(txns, got)):
            slot = first + i
            if t.start_ts in decided:
                assert decision(r) == decision(decided[t.start_ts])
                continue
            if t.start_ts >= slot:
                assert r.code == 3
                continue
            keys = set(t.conflict_keys)
            if t.start_ts < safe:
                assert r.reason == zero_pb2.TOO_OLD
            elif any(ts > t.start_ts and keys & ks for ts, ks in commits):
                assert r.reason == zero_pb2.CONFLICT
            else:
                assert r.commit_ts == slot and not r.aborted
                commits.append((slot, keys))
            decided[t.start_ts] = r
        handed = o.slot
        if rng.random() < 0.1:
            safe = max(safe, handed - rng.randint(0, 30))
            o.state.advance(state_pb2.AdvanceSafeTs(safe_ts=safe))


def endless_workload(commits: int = 1_000_000, batch: int = 1000) -> dict[str, int]:
    """`commits` commits of 2 random keys each through ZeroState.apply, in batches (a
    DecideTxns proposal each), with safe_ts trailing the last slot by 20,000 and
    decisions kept for 20,000 more. Returns the table sizes, the snapshot size and the
    process's resident memory after 30% and at the end."""
    s = ZeroState()
    rng = random.Random(1)
    out: dict[str, int] = {}
    index = 0
    last = batch
    rounds = commits // batch
    for n in range(rounds):
        # Each start_ts once: the slots of the batch before (all below this batch's).
        txns = [req(last - batch + 1 + i, rng.getrandbits(63), rng.getrandbits(63)) for i in range(batch)]
        index += 1
        s.apply(index, state_pb2.Proposal(decide_txns=state_pb2.DecideTxns(txns=txns, first_commit_ts=last + 1)))
        last += batch
        if n % 10 == 9:
            safe = max(0, last - 20_000)
            index += 1
            s.apply(index, state_pb2.Proposal(advance_safe_ts=state_pb2.AdvanceSafeTs(
                safe_ts=safe, purge_below=max(0, safe - 20_000))))
        if n in (rounds * 3 // 10, rounds - 1):
            tag = "early" if n < rounds - 1 else "end"
            with open("/proc/self/statm") as f:
                out[f"rss_{tag}"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            out[f"snapshot_{tag}"] = len(s.snapshot())
            out[f"keys_{tag}"] = s.oracle.conflict_keys
            out[f"decisions_{tag}"] = s.oracle.decisions
    return out


@pytest.mark.timeout(120)
def test_memory_is_flat_on_an_endless_workload() -> None:
    """1,000,000 commits through the state machine, in a process of its own so its
    resident memory is the tables': memory and snapshot size flat within 10%."""
    code = "import json, test_oracle_state as t; print(json.dumps(t.endless_workload()))"
    p = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                       timeout=110, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert 20_000 <= r["decisions_end"] <= 41_001 and 2 * 10_000 <= r["keys_end"] <= 2 * 21_000, r
    assert r["rss_end"] <= r["rss_early"] * 1.10, r
    assert r["snapshot_end"] <= r["snapshot_early"] * 1.10, r


def test_decisions_through_the_state_machine() -> None:
    """DecideTxns against the shard map as the log has it, a snapshot keeps it all,
    and a decision changes no membership version."""
    s = ZeroState()
    s.apply(1, state_pb2.Proposal(connect=state_pb2.ConnectMember(addr="d1:1", replicas=1)))
    s.apply(2, state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(
        tablets=[zero_pb2.Tablet(predicate="t", group_id=1)])))
    version = s.version
    d = s.apply(3, state_pb2.Proposal(key="k1", decide_txns=state_pb2.DecideTxns(
        txns=[req(5, 1, writes=(("t", 1),)), req(6, 1, writes=(("t", 1),)), req(7, 2, writes=(("t", 2),))],
        first_commit_ts=10)))
    assert [(r.commit_ts, r.reason) for r in d.result.decisions.txns] == [
        (10, 0), (0, zero_pb2.CONFLICT), (0, zero_pb2.WRONG_GROUP)]
    assert s.version == version and d.version == version
    # Not kept for dedup: a retry with the same key is decided again — the same way.
    again = s.apply(4, state_pb2.Proposal(key="k1", decide_txns=state_pb2.DecideTxns(
        txns=[req(5, 1, writes=(("t", 1),))], first_commit_ts=20)))
    assert not again.duplicate and again.result.decisions.txns[0].commit_ts == 10
    s.apply(5, state_pb2.Proposal(advance_safe_ts=state_pb2.AdvanceSafeTs(safe_ts=8)))
    back = ZeroState.restore(s.snapshot())
    assert back.snapshot() == s.snapshot()
    assert back.oracle.safe_ts == 8 and decision(back.oracle.status(6)) == decision(s.oracle.status(6))
    assert back.oracle.status(5).commit_ts == 10
    # A state that never decided anything snapshots exactly as before the oracle existed.
    plain = ZeroState()
    plain.apply(1, state_pb2.Proposal(connect=state_pb2.ConnectMember(addr="d1:1", replicas=1)))
    assert not state_pb2.ZeroStateSnapshot.FromString(plain.snapshot()[8:]).HasField("oracle")
