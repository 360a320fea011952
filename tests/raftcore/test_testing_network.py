"""SimNetwork on its own: the fault model is what the simulation tests rely on."""

from __future__ import annotations

import pytest

from raftcore import raftpb
from raftcore.raftpb import Message
from raftcore.testing import SimNetwork


def msg(from_: int, to: int, index: int = 0) -> Message:
    return Message(type=raftpb.MsgApp, from_=from_, to=to, term=1, index=index)


def delivered(net: SimNetwork, now: int) -> list[tuple[int, int, int]]:
    return [(m.from_, m.to, m.index) for m in net.deliver(now)]


def test_delivers_in_order_without_faults() -> None:
    net = SimNetwork(1)
    for i in range(5):
        net.send(msg(1, 2, i), now=0)
    assert delivered(net, 0) == [(1, 2, i) for i in range(5)]
    assert net.pending() == 0
    assert net.stats.sent == net.stats.delivered == 5


def test_a_delivered_message_is_a_copy() -> None:
    net = SimNetwork(1)
    m = msg(1, 2, 7)
    net.send(m, now=0)
    m.index = 99  # the sender reusing its object must not change what is on the wire
    (got,) = net.deliver(0)
    assert got.index == 7 and got is not m


def test_dropped_messages_are_not_delivered() -> None:
    lost: list[tuple[int, str]] = []
    net = SimNetwork(3, drop=1.0, on_drop=lambda m, why: lost.append((m.index, why)))
    net.send(msg(1, 2, 1), now=0)
    assert net.deliver(100) == []
    assert lost == [(1, "drop")]
    assert net.stats.dropped == 1


def test_drop_rate_is_roughly_the_probability() -> None:
    net = SimNetwork(4, drop=0.3)
    for i in range(2000):
        net.send(msg(1, 2, i), now=0)
    n = len(net.deliver(0))
    assert 1250 < n < 1550


def test_duplicates() -> None:
    net = SimNetwork(5, duplicate=1.0)
    net.send(msg(1, 2, 1), now=0)
    assert delivered(net, 0) == [(1, 2, 1), (1, 2, 1)]
    assert net.stats.duplicated == 1


def test_delay_holds_messages_until_due() -> None:
    net = SimNetwork(6, delay=(3, 3))
    net.send(msg(1, 2, 1), now=10)
    assert net.deliver(12) == []
    assert net.next_due() == 13
    assert delivered(net, 13) == [(1, 2, 1)]


def test_random_delays_reorder() -> None:
    net = SimNetwork(7, delay=(0, 5))
    for i in range(50):
        net.send(msg(1, 2, i), now=0)
    got = [i for _, _, i in delivered(net, 5)]
    assert sorted(got) == list(range(50))
    assert got != list(range(50))


def test_reorder_shuffles_a_batch() -> None:
    net = SimNetwork(8, reorder=1.0)
    for i in range(20):
        net.send(msg(1, 2, i), now=0)
    got = [i for _, _, i in delivered(net, 0)]
    assert sorted(got) == list(range(20)) and got != list(range(20))


def test_partition_blocks_across_groups_only() -> None:
    net = SimNetwork(9)
    net.partition({1, 2}, {3})
    for a, b in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)]:
        net.send(msg(a, b), now=0)
    assert sorted((f, t) for f, t, _ in delivered(net, 0)) == [(1, 2), (2, 1)]
    # Nodes named in no group form a group of their own.
    assert net.can_reach(4, 5) and not net.can_reach(4, 1)
    net.heal()
    assert net.can_reach(1, 3) and net.can_reach(4, 1)


def test_partition_loses_messages_in_flight() -> None:
    net = SimNetwork(10, delay=(2, 2))
    net.send(msg(1, 3), now=0)
    net.partition({1}, {3})
    assert net.deliver(5) == []
    assert net.stats.dropped == 1


def test_isolate_and_one_way_cut() -> None:
    net = SimNetwork(11)
    net.isolate(2)
    assert not net.can_reach(1, 2) and not net.can_reach(2, 1) and net.can_reach(1, 3)
    net.heal()
    net.cut(1, 2)
    assert not net.can_reach(1, 2) and net.can_reach(2, 1)
    net.send(msg(1, 2), now=0)
    net.send(msg(2, 1), now=0)
    assert delivered(net, 0) == [(2, 1, 0)]


def test_messages_to_a_down_node_are_lost_even_in_flight() -> None:
    lost: list[str] = []
    net = SimNetwork(12, delay=(1, 1), on_drop=lambda m, why: lost.append(why))
    net.send(msg(1, 2), now=0)
    net.send(msg(2, 1), now=0)
    net.set_down(2)
    assert delivered(net, 1) == [(2, 1, 0)]  # what 2 sent before crashing still arrives
    assert lost == ["down"]
    net.send(msg(1, 2), now=1)
    assert net.deliver(5) == []
    net.set_down(2, False)
    net.send(msg(1, 2), now=5)
    assert delivered(net, 6) == [(1, 2, 0)]


def test_same_seed_same_schedule() -> None:
    def run(seed: int) -> list[tuple[int, int, int]]:
        net = SimNetwork(seed, drop=0.2, duplicate=0.2, delay=(0, 4), reorder=0.5)
        out = []
        for t in range(30):
            net.send(msg(1 + t % 3, 1 + (t + 1) % 3, t), now=t)
            out += [(t, f, i) for f, _, i in delivered(net, t)]
        return out

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_rejects_bad_fault_rates() -> None:
    with pytest.raises(ValueError, match="drop"):
        SimNetwork(drop=1.5)
    with pytest.raises(ValueError, match="delay"):
        SimNetwork(delay=(3, 1))
    with pytest.raises(ValueError, match="more than one"):
        SimNetwork().partition({1, 2}, {2, 3})
