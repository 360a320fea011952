"""One rebalancer round under placement rules (issue 20's goal: 100,000 tablets under
100 rules, one round <= 200 ms), and labelled Connects (O(1) amortized).

    python bench/placement_bench.py [--tablets 100000] [--rules 100] [--groups 30] [--rounds 5]
                                    [--members 3000]

Builds a MembershipState of `groups` groups of 3 members in 3 zones (one group in
three is zone-homogeneous, so constraints have something to choose), `tablets` tablets
with sizes and read/write rates, a third of them breaking their rule, and `rules` rules
(pins and zone constraints, globs by prefix). Measures, with a fresh compiled policy
each time (no memo carried over), the planner's round (zero/leader/planner.py) --
the rules' moves and the balancing -- and reports the median. Then applies `members`
labelled Connects to a fresh state and reports the median cost per Connect in the
first and the last tenth (flat = O(1) amortized). Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zero.leader.planner import MovePlan, Placement, plan_round  # noqa: E402
from zero.pb import state_pb2, zero_pb2  # noqa: E402
from zero.state.machine import ZeroState  # noqa: E402
from zero.state.rules import Rules  # noqa: E402

ZONES = ("a", "b", "c")


def build(tablets: int, rules: int, groups: int, seed: int = 7) -> tuple[zero_pb2.MembershipState,
                                                                          zero_pb2.PlacementPolicy]:
    rnd = random.Random(seed)
    st = zero_pb2.MembershipState()
    for gid in range(1, groups + 1):
        for i in range(3):
            mid = gid * 10 + i
            zone = ZONES[(gid // 3) % 3] if gid % 3 == 0 else ZONES[i]  # every third: one zone
            st.groups[gid].members[mid].CopyFrom(zero_pb2.Member(id=mid, group_id=gid, addr=f"n{mid}:1",
                                                                 labels={"zone": zone}))
    for k in range(tablets):
        gid = rnd.randint(1, groups)
        name = f"p{k % (rules * 2)}.t{k}"
        st.groups[gid].tablets[name].CopyFrom(zero_pb2.Tablet(
            predicate=name, group_id=gid, size_bytes=rnd.randint(1, 1 << 20),
            read_rate=rnd.choice((0.0, 1.0, 50.0)), write_rate=rnd.choice((0.0, 5.0))))
    policy = zero_pb2.PlacementPolicy()
    for r in range(rules):
        if r % 3 == 0:
            policy.rules.append(zero_pb2.PlacementRule(tablet_glob=f"p{r}.*", pin_group=1 + r % groups))
        else:
            policy.rules.append(zero_pb2.PlacementRule(tablet_glob=f"p{r}.*",
                                                       constraints=[f"zone={ZONES[r % 3]}"]))
    return st, policy


def apply(st: zero_pb2.MembershipState, moves: list[MovePlan]) -> None:
    for m in moves:
        t = zero_pb2.Tablet()
        t.CopyFrom(st.groups[m.src_group].tablets[m.predicate])
        del st.groups[m.src_group].tablets[m.predicate]
        t.group_id = m.dst_group
        st.groups[m.dst_group].tablets[m.predicate].CopyFrom(t)


def bench_round(tablets: int, rules: int, groups: int, rounds: int) -> dict[str, tuple[list[float], int]]:
    """Three rounds: the first on scattered tablets (cold: a fresh compiled policy each
    time), then the steady state (the first round's moves applied: a round that finds
    everything in place), cold and with the policy's matches memoised, as the leader's
    state keeps them between rounds."""
    st, policy = build(tablets, rules, groups)
    draining = frozenset({groups})  # the last group drains
    out: dict[str, tuple[list[float], int]] = {}

    def run(label: str, fresh: bool) -> list[MovePlan]:
        times = []
        warm = Placement(Rules(policy), draining)
        moves: list[MovePlan] = []
        for _ in range(rounds):
            placement = Placement(Rules(policy), draining) if fresh else warm
            t0 = time.perf_counter()
            moves = plan_round(st, placement, groups=set(st.groups)).moves
            times.append(time.perf_counter() - t0)
        out[label] = (times, len(moves))
        return moves

    t0 = time.perf_counter()
    for _ in range(rounds):
        for g in st.groups.values():
            for t in g.tablets.values():
                (t.size_bytes, t.read_rate, t.write_rate, t.read_only)
    out["(reference: a pass reading 4 fields of each tablet)"] = (
        [(time.perf_counter() - t0) / rounds], 0)
    apply(st, run("scattered tablets, cold", True))
    run("steady state, cold", True)
    run("steady state, warm", False)
    return out


def bench_connects(members: int) -> tuple[float, float]:
    s = ZeroState()
    per: list[float] = []
    for i in range(members):
        p = state_pb2.Proposal(connect=state_pb2.ConnectMember(
            addr=f"n{i}:1", replicas=3, labels={"zone": ZONES[(i * 7) % 3] if i % 5 else "a"}))
        t0 = time.perf_counter()
        s.apply(i + 1, p)
        per.append(time.perf_counter() - t0)
    tenth = max(1, members // 10)
    return statistics.median(per[:tenth]), statistics.median(per[-tenth:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tablets", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--groups", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--members", type=int, default=3000)
    a = ap.parse_args()
    print(f"{a.tablets:,} tablets, {a.rules} rules, {a.groups} groups of 3 in 3 zones, one draining")
    print(f"{'one round':<52} {'median':>10} {'max':>10}  moves  goal")
    for label, (times, moves) in bench_round(a.tablets, a.rules, a.groups, a.rounds).items():
        med = statistics.median(times) * 1e3
        goal = "" if label.startswith("(") else f"  <= 200 ms {'ok' if med <= 200 else 'MISSED'}"
        print(f"{label[:52]:<52} {med:>8.1f}ms {max(times) * 1e3:>8.1f}ms {moves:>6,}{goal}")
    first, last = bench_connects(a.members)
    print(f"{f'labelled Connect, first {a.members // 10:,}':<52} {first * 1e6:>8.1f}us")
    print(f"{f'labelled Connect, last {a.members // 10:,}':<52} {last * 1e6:>8.1f}us  flat = O(1) amortized")


if __name__ == "__main__":
    main()
