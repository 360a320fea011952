"""Pure-helper tests after etcd-io/raft: quorum math (quorum/testdata tables),
Inflights and Progress (tracker/*_test.go), the conf change Changer
(confchange/testdata, datadriven) and Restore round-trips (confchange/restore_test.go).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from raftcore.confchange import Changer, restore
from raftcore.errors import ConfChangeError
from raftcore.quorum import INFINITE_INDEX, JointConfig, MajorityConfig
from raftcore.raftpb import (
    ConfChangeAddLearnerNode,
    ConfChangeAddNode,
    ConfChangeRemoveNode,
    ConfChangeSingle,
    ConfChangeUpdateNode,
    ConfState,
)
from raftcore.tracker import Inflights, Progress, ProgressState, ProgressTracker

TESTDATA = Path(__file__).parent / "testdata"


# -- quorum ------------------------------------------------------------------------------------
def _ids(arg: str) -> list[str]:
    return [t.strip() for t in arg.strip("()").split(",") if t.strip()]


def _quorum_cases() -> list[tuple[str, str]]:
    cases = []
    for line in (TESTDATA / "quorum_cases.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            cmd, want = line.split(" => ")
            cases.append((cmd, want))
    return cases


def _parse_quorum_case(cmd: str) -> tuple[str, list[int], list[int] | None, list[str], list[str]]:
    name, _, rest = cmd.partition(" ")
    args = dict(re.findall(r"(\w+)=(\([^)]*\)|\S+)", rest))
    cfg = [int(x) for x in _ids(args.get("cfg", "()"))]
    cfgj: list[int] | None = None
    if "cfgj" in args:
        cfgj = [] if args["cfgj"] == "zero" else [int(x) for x in _ids(args["cfgj"])]
    return name, cfg, cfgj, _ids(args.get("idx", "()")), _ids(args.get("votes", "()"))


def _by_voter(cfg: list[int], cfgj: list[int], vals: list[str]) -> dict[int, str]:
    """Inputs are given per distinct voter in order of appearance in (cfg, cfgj)."""
    out: dict[int, str] = {}
    order = [v for i, v in enumerate(cfg + cfgj) if v not in (cfg + cfgj)[:i]]
    assert len(order) == len(vals), "mismatched input"
    for vid, v in zip(order, vals):
        out[vid] = v
    return out


@pytest.mark.parametrize("cmd,want", _quorum_cases())
def test_quorum_datadriven(cmd: str, want: str) -> None:
    name, cfg, cfgj, idx, votes = _parse_quorum_case(cmd)
    c = MajorityConfig(cfg)
    cj = MajorityConfig(cfgj or [])
    joint = JointConfig(c, cj)
    if name == "committed":
        acked = {vid: int(v) for vid, v in _by_voter(cfg, cfgj or [], idx).items() if v != "_"}
        got = (joint if cfgj is not None else c).committed_index(lambda vid: acked.get(vid, 0))
        assert ("inf" if got == INFINITE_INDEX else str(got)) == want
        # Invariants etcd's harness checks on every case: the halves are
        # interchangeable, and a majority joint with itself or nothing is itself.
        assert JointConfig(cj, c).committed_index(lambda vid: acked.get(vid, 0)) == got
        if cfgj is None:
            assert JointConfig(c, c).committed_index(lambda vid: acked.get(vid, 0)) == got
            assert JointConfig(c, MajorityConfig()).committed_index(lambda vid: acked.get(vid, 0)) == got
    else:
        assert name == "vote"
        vm = {vid: v == "y" for vid, v in _by_voter(cfg, cfgj or [], votes).items() if v != "_"}
        got_v = (joint if cfgj is not None else c).vote_result(vm)
        assert "Vote" + got_v.name.capitalize() == want
        assert JointConfig(cj, c).vote_result(vm) == got_v
        if cfgj is None:
            assert JointConfig(c, c).vote_result(vm) == got_v


def test_majority_committed_index_is_order_statistic() -> None:
    # etcd's quick_test: the committed index is the largest index acked by a majority,
    # i.e. max{i : |{v : acked(v) >= i}| >= n/2 + 1}, computed naively.
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(1, 7)
        ids = rng.sample(range(1, 20), n)
        acked = {v: rng.randint(0, 10) for v in ids}
        naive = max(i for i in range(0, 11) if sum(1 for v in ids if acked[v] >= i) >= n // 2 + 1)
        assert MajorityConfig(ids).committed_index(lambda v: acked[v]) == naive


# -- Inflights ---------------------------------------------------------------------------------
def test_inflights_add_and_free() -> None:
    inf = Inflights(10)
    for i in range(5):
        inf.add(i, 100 + i)
    assert inf.count() == 5 and inf.bytes == 510
    for i in range(5, 10):
        inf.add(i, 100 + i)
    assert inf.count() == 10 and inf.bytes == 1045 and inf.full()
    inf.free_le(4)
    assert inf.count() == 5 and inf.bytes == 535 and not inf.full()
    inf.free_le(8)
    assert inf.count() == 1 and inf.bytes == 109
    # Freeing below the window is a no-op; freeing everything empties it.
    inf.free_le(3)
    assert inf.count() == 1
    inf.free_le(9)
    assert inf.count() == 0 and inf.bytes == 0
    # Indexes after a free keep working (etcd's rotating-buffer case).
    for i in range(10, 15):
        inf.add(i, 1)
    inf.free_le(12)
    assert inf.count() == 2 and inf.bytes == 2


@pytest.mark.parametrize("size,max_bytes,full_at,free_le,again_at", [
    (1, 0, 1, 1, 2),        # single entry
    (1, 10, 1, 1, 2),       # single entry, byte overflow
    (15, 0, 15, 6, 22),     # multi entry
    (8, 400, 4, 2, 7),      # slight byte overflow
    (8, 406, 4, 3, 8),      # exactly max bytes
    (15, 408, 5, 1, 6),     # larger byte overflow
])
def test_inflights_full(size: int, max_bytes: int, full_at: int, free_le: int, again_at: int) -> None:
    inf = Inflights(size, max_bytes)

    def add_until_full(begin: int, end: int) -> None:
        for i in range(begin, end):
            assert not inf.full(), f"full at {i}, want {end}"
            inf.add(i, 100 + i)
        assert inf.full(), f"not full at {end}"

    add_until_full(0, full_at)
    inf.free_le(free_le)
    add_until_full(full_at, again_at)


def test_inflights_reset_does_not_leak_bytes() -> None:
    inf = Inflights(10, 1000)
    index = 0
    for _ in range(100):
        inf.reset()
        for _ in range(5):
            assert not inf.full()
            index += 1
            inf.add(index, 16)
        inf.free_le(index - 2)
        assert not inf.full()
        assert inf.count() == 2
    inf.free_le(index)
    assert inf.count() == 0 and inf.bytes == 0


# -- Progress ----------------------------------------------------------------------------------
def _pr(state: ProgressState = ProgressState.PROBE, match: int = 0, next: int = 1,
        pending: int = 0, size: int = 256) -> Progress:
    p = Progress(match=match, next=next, inflights=Inflights(size))
    p.state = state
    p.pending_snapshot = pending
    return p


def test_progress_is_paused() -> None:
    p = _pr(ProgressState.PROBE)
    assert not p.is_paused()
    p.probe_sent = True
    assert p.is_paused()
    # In REPLICATE, flow control pauses only on a full inflight window.
    p = _pr(ProgressState.REPLICATE, size=1)
    assert not p.is_paused()
    p.inflights.add(1)
    assert p.is_paused()
    # SNAPSHOT always pauses.
    for sent in (False, True):
        p = _pr(ProgressState.SNAPSHOT)
        p.probe_sent = sent
        assert p.is_paused()


def test_progress_resume() -> None:
    p = _pr(next=2)
    p.probe_sent = True
    p.maybe_decr_to(1, 1)
    assert not p.probe_sent
    p.probe_sent = True
    p.maybe_update(2)
    assert not p.probe_sent


@pytest.mark.parametrize("p,wnext", [
    (_pr(ProgressState.REPLICATE, match=1, next=5), 2),
    (_pr(ProgressState.SNAPSHOT, match=1, next=5, pending=10), 11),   # snapshot finished
    (_pr(ProgressState.SNAPSHOT, match=1, next=5, pending=0), 2),     # snapshot failed
])
def test_progress_become_probe(p: Progress, wnext: int) -> None:
    p.become_probe()
    assert p.state == ProgressState.PROBE and p.match == 1 and p.next == wnext


def test_progress_become_replicate_and_snapshot() -> None:
    p = _pr(ProgressState.PROBE, match=1, next=5)
    p.become_replicate()
    assert (p.state, p.match, p.next) == (ProgressState.REPLICATE, 1, 2)
    p = _pr(ProgressState.PROBE, match=1, next=5)
    p.become_snapshot(10)
    assert (p.state, p.match, p.pending_snapshot) == (ProgressState.SNAPSHOT, 1, 10)


@pytest.mark.parametrize("update,wm,wn,wok", [
    (2, 3, 5, False),   # do not decrease match, next
    (3, 3, 5, False),   # do not decrease next
    (4, 4, 5, True),    # increase match, do not decrease next
    (5, 5, 6, True),    # increase match, next
])
def test_progress_update(update: int, wm: int, wn: int, wok: bool) -> None:
    p = _pr(match=3, next=5)
    assert p.maybe_update(update) == wok
    assert (p.match, p.next) == (wm, wn)


@pytest.mark.parametrize("state,m,n,rejected,last,w,wn", [
    (ProgressState.REPLICATE, 5, 10, 5, 5, False, 10),   # rejected <= match: stale
    (ProgressState.REPLICATE, 5, 10, 4, 4, False, 10),
    (ProgressState.REPLICATE, 5, 10, 9, 9, True, 6),     # straight back to match + 1
    (ProgressState.PROBE, 0, 0, 0, 0, False, 0),          # next - 1 != rejected: stale
    (ProgressState.PROBE, 0, 10, 5, 5, False, 10),
    (ProgressState.PROBE, 0, 10, 9, 9, True, 9),          # decrement by one
    (ProgressState.PROBE, 0, 2, 1, 1, True, 1),
    (ProgressState.PROBE, 0, 1, 0, 0, True, 1),           # never below 1
    (ProgressState.PROBE, 0, 10, 9, 2, True, 3),          # min(rejected, hint + 1)
    (ProgressState.PROBE, 0, 10, 9, 0, True, 1),
])
def test_progress_maybe_decr(state: ProgressState, m: int, n: int, rejected: int, last: int,
                             w: bool, wn: int) -> None:
    p = _pr(state, match=m, next=n)
    assert p.maybe_decr_to(rejected, last) == w
    assert p.match == m and p.next == wn


# -- confchange: datadriven Changer tables -----------------------------------------------------
_CC_TYPES = {"v": ConfChangeAddNode, "l": ConfChangeAddLearnerNode, "r": ConfChangeRemoveNode,
             "u": ConfChangeUpdateNode}
_STATE_NAMES = {ProgressState.PROBE: "StateProbe", ProgressState.REPLICATE: "StateReplicate",
                ProgressState.SNAPSHOT: "StateSnapshot"}


def _datadriven(path: Path) -> list[tuple[str, str, str, int]]:
    """(command line, input, expected output, line number) of a datadriven file."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip() or lines[i].startswith("#"):
            i += 1
            continue
        start, cmd = i + 1, lines[i].strip()
        i += 1
        inp = []
        while lines[i] != "----":
            inp.append(lines[i])
            i += 1
        i += 1
        exp = []
        while i < len(lines) and lines[i].strip():
            exp.append(lines[i])
            i += 1
        out.append((cmd, "\n".join(inp), "\n".join(exp), start))
    return out


def _describe(tr: ProgressTracker) -> str:
    lines = [repr(tr.config)]
    for vid in sorted(tr.progress):
        p = tr.progress[vid]
        s = f"{vid}: {_STATE_NAMES[p.state]} match={p.match} next={p.next}"
        lines.append(s + (" learner" if p.is_learner else ""))
    return "\n".join(lines)


@pytest.mark.parametrize("path", sorted((TESTDATA / "confchange").glob("*.txt")), ids=lambda p: p.stem)
def test_confchange_datadriven(path: Path) -> None:
    tr = ProgressTracker(10)
    last_index = 0  # incremented after every command, as etcd's harness does
    for cmd, inp, exp, line in _datadriven(path):
        name, *args = cmd.split()
        ccs = [ConfChangeSingle(type=_CC_TYPES[t[0]], node_id=int(t[1:])) for t in inp.split()]
        ch = Changer(tr, last_index)
        try:
            if name == "simple":
                cfg, prs = ch.simple(ccs)
            elif name == "enter-joint":
                auto = any(a == "autoleave=true" for a in args)
                cfg, prs = ch.enter_joint(auto, ccs)
            else:
                assert name == "leave-joint" and not ccs
                cfg, prs = ch.leave_joint()
        except ConfChangeError as e:
            got = str(e)
        else:
            tr.set(cfg, prs)
            got = _describe(tr)
        last_index += 1
        assert got == exp, f"{path.name}:{line}: {cmd} {inp!r}"


def test_changer_leaves_input_untouched() -> None:
    tr = ProgressTracker(10)
    cfg, prs = Changer(tr, 1).simple([ConfChangeSingle(type=ConfChangeAddNode, node_id=1)])
    tr.set(cfg, prs)
    before = _describe(tr)
    Changer(tr, 2).enter_joint(True, [ConfChangeSingle(type=ConfChangeAddNode, node_id=2),
                                      ConfChangeSingle(type=ConfChangeRemoveNode, node_id=1)])
    assert _describe(tr) == before


# -- confchange: restore round-trips -------------------------------------------------------------
def _random_conf_state(rng: random.Random) -> ConfState:
    """A random valid ConfState, as etcd's rndConfChange.Generate (never the empty one)."""
    n_voters = 1 + rng.randrange(5)
    n_learners = rng.randrange(5)
    n_removed = rng.randrange(3)
    pool = 2 * (n_voters + n_learners + n_removed)
    ids = [i + 1 for i in rng.sample(range(pool), pool)]
    cs = ConfState(voters=ids[:n_voters])
    ids = ids[n_voters:]
    cs.learners.extend(ids[:n_learners])
    ids = ids[n_learners:]
    retained = rng.randrange(n_voters + 1)
    if retained or n_removed:
        cs.voters_outgoing.extend(list(cs.voters[:retained]) + ids[:n_removed])
    if n_removed:
        cs.learners_next.extend(ids[:rng.randrange(n_removed + 1)])
    cs.auto_leave = bool(cs.voters_outgoing) and rng.randrange(2) == 1
    return cs


def _check_restore(cs: ConfState) -> None:
    cfg, prs = restore(ProgressTracker(20), 10, cs)
    tr = ProgressTracker(20)
    tr.set(cfg, prs)
    got = tr.conf_state()
    want = ConfState(voters=sorted(cs.voters), learners=sorted(cs.learners),
                     voters_outgoing=sorted(cs.voters_outgoing), learners_next=sorted(cs.learners_next),
                     auto_leave=cs.auto_leave)
    assert got == want, f"restore({cs}) gave {got}"


@pytest.mark.parametrize("cs", [
    ConfState(),
    ConfState(voters=[1, 2, 3]),
    ConfState(voters=[1, 2, 3], learners=[4, 5, 6]),
    ConfState(voters=[1, 2, 3], learners=[5], voters_outgoing=[1, 2, 4, 6], learners_next=[4]),
], ids=["empty", "voters", "learners", "joint"])
def test_restore_units(cs: ConfState) -> None:
    _check_restore(cs)


def test_restore_round_trips_random_conf_states() -> None:
    rng = random.Random(20240611)
    for _ in range(1000):
        _check_restore(_random_conf_state(rng))


def test_restore_does_not_touch_the_given_tracker() -> None:
    tr = ProgressTracker(20)
    restore(tr, 10, ConfState(voters=[1, 2], learners=[3]))
    assert tr.progress == {} and not tr.config.voters.ids()


def test_progress_maybe_decr_keeps_next_above_match() -> None:
    p = _pr(ProgressState.PROBE, match=10, next=11)
    assert p.maybe_decr_to(10, 5)
    assert p.next == 11 and p.match == 10
