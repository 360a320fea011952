"""Majority quorums (etcd quorum/majority.go)."""

from __future__ import annotations

import enum
from typing import Callable, Mapping

__all__ = ["MajorityConfig", "VoteResult", "INFINITE_INDEX"]

# The commit index of an empty configuration: it never constrains the joint minimum.
INFINITE_INDEX = (1 << 64) - 1


class VoteResult(enum.Enum):
    PENDING = 1  # the outcome is not decided yet
    LOST = 2     # a quorum can no longer be reached
    WON = 3      # a quorum granted the vote


class MajorityConfig(frozenset[int]):
    """A set of voter ids deciding by simple majority."""

    def committed_index(self, acked: Callable[[int], int]) -> int:
        """The largest index acknowledged by a majority. `acked(id)` returns the
        highest index that voter has durably appended (0 when unknown).
        An empty config returns INFINITE_INDEX (it does not constrain a joint config)."""
        n = len(self)
        if n == 0:
            return INFINITE_INDEX
        if n == 1:
            for vid in self:
                return acked(vid)
        srt = sorted([acked(vid) for vid in self])
        # The element at position n - (n//2 + 1) is acknowledged by at least a majority.
        return srt[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON once a majority granted, LOST once a majority is impossible,
        PENDING otherwise. An empty config wins (by convention, as etcd)."""
        if not self:
            return VoteResult.WON
        granted = missing = 0
        for vid in self:
            v = votes.get(vid)
            if v is None:
                missing += 1
            elif v:
                granted += 1
        q = len(self) // 2 + 1
        if granted >= q:
            return VoteResult.WON
        if granted + missing >= q:
            return VoteResult.PENDING
        return VoteResult.LOST

    def __repr__(self) -> str:
        return "(" + " ".join(str(i) for i in sorted(self)) + ")"
