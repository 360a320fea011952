"""Joint quorums (etcd quorum/joint.go): both halves must agree (thesis §4.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from .majority import MajorityConfig, VoteResult

__all__ = ["JointConfig"]


@dataclass(frozen=True, slots=True)
class JointConfig:
    incoming: MajorityConfig = field(default_factory=MajorityConfig)
    # Empty unless the configuration is joint.
    outgoing: MajorityConfig = field(default_factory=MajorityConfig)

    @property
    def is_joint(self) -> bool:
        return bool(self.outgoing)

    def ids(self) -> frozenset[int]:
        return self.incoming | self.outgoing

    def committed_index(self, acked: Callable[[int], int]) -> int:
        a = self.incoming.committed_index(acked)
        if not self.outgoing:
            return a
        b = self.outgoing.committed_index(acked)
        return a if a < b else b

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        r1 = self.incoming.vote_result(votes)
        if not self.outgoing:
            return r1
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if r1 == VoteResult.LOST or r2 == VoteResult.LOST:
            return VoteResult.LOST
        return VoteResult.PENDING

    def __repr__(self) -> str:
        if self.outgoing:
            return f"{self.incoming!r}&&{self.outgoing!r}"
        return repr(self.incoming)
