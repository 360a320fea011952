"""The tracked configuration and every peer's Progress (etcd tracker/tracker.go)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..quorum import JointConfig, MajorityConfig, VoteResult
from ..raftpb import ConfState
from .inflights import Inflights
from .progress import Progress

__all__ = ["ProgressTracker", "TrackerConfig"]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """A configuration. Invariants (checked by confchange): voters and learners are
    disjoint; learners_next ⊆ outgoing voters; learners_next and auto_leave are only
    set while joint."""

    voters: JointConfig = field(default_factory=JointConfig)
    # Leave the joint config automatically once the joint config is applied.
    auto_leave: bool = False
    learners: frozenset[int] = frozenset()
    # Voters of the outgoing config that become learners when the joint config is left.
    learners_next: frozenset[int] = frozenset()

    def __repr__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += " learners=" + repr(MajorityConfig(self.learners))
        if self.learners_next:
            s += " learners_next=" + repr(MajorityConfig(self.learners_next))
        if self.auto_leave:
            s += " autoleave"
        return s


class ProgressTracker:
    __slots__ = ("config", "progress", "votes", "max_inflight", "max_inflight_bytes", "_voter_ids")

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self._voter_ids: list[int] = []

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)

    def set(self, config: TrackerConfig, progress: dict[int, Progress]) -> None:
        self.config = config
        self.progress = progress
        self._voter_ids = sorted(config.voters.ids())

    def conf_state(self) -> ConfState:
        c = self.config
        return ConfState(
            voters=sorted(c.voters.incoming),
            voters_outgoing=sorted(c.voters.outgoing),
            learners=sorted(c.learners),
            learners_next=sorted(c.learners_next),
            auto_leave=c.auto_leave,
        )

    def is_singleton(self) -> bool:
        v = self.config.voters
        return len(v.incoming) == 1 and not v.outgoing

    def voter_ids(self) -> list[int]:
        """Sorted ids of every voter (both halves of a joint config)."""
        return self._voter_ids

    def learner_ids(self) -> list[int]:
        return sorted(self.config.learners)

    def committed(self) -> int:
        """The largest index acknowledged by a quorum (§5.3)."""
        prs = self.progress
        return self.config.voters.committed_index(lambda vid: prs[vid].match if vid in prs else 0)

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was recently active (CheckQuorum, §6.2)."""
        votes = {vid: pr.recent_active for vid, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(votes) == VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, vid: int, granted: bool) -> None:
        # The first vote from a peer counts; duplicates are ignored.
        self.votes.setdefault(vid, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = rejected = 0
        for vid, pr in self.progress.items():
            if pr.is_learner:
                continue
            v = self.votes.get(vid)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)
