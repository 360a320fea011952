"""When a learner zero is promoted to voter: only after it stayed caught up and live
without a break for the promotion window (zero/replica/promotion.py `ready_learners`)."""

from __future__ import annotations

from zero.replica.promotion import ready_learners


def test_a_learner_is_promoted_only_after_a_full_ready_stretch() -> None:
    since: dict[int, float] = {}
    ready = {2: True, 3: False}
    pick = lambda now: ready_learners([2, 3], lambda rid: ready[rid], since, now, 1.0)  # noqa: E731
    assert pick(0.0) == []  # 2 starts its stretch
    assert pick(0.9) == []
    assert pick(1.0) == [2]
    assert since == {2: 0.0}


def test_a_break_starts_the_stretch_over() -> None:
    since: dict[int, float] = {}
    ready = {2: True}
    pick = lambda now: ready_learners([2], lambda rid: ready[rid], since, now, 1.0)  # noqa: E731
    assert pick(0.0) == []
    ready[2] = False  # it died (or fell behind) a moment after catching up
    assert pick(0.5) == []
    ready[2] = True
    assert pick(1.2) == []  # 0.5 s since it came back, not 1.2
    assert pick(2.2) == [2]


def test_learners_that_left_are_forgotten() -> None:
    since = {2: 0.0, 4: 0.0}
    assert ready_learners([3, 2], lambda rid: True, since, 5.0, 1.0) == [2]
    assert since == {2: 0.0, 3: 5.0}
