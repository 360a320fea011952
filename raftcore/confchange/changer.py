"""Changer: applies ConfChangeSingle operations to a copy of the tracked configuration.

Rules (etcd confchange/confchange.go):
- `simple` may change at most one voter and only outside a joint config;
- `enter_joint` copies the incoming voters to the outgoing half, then applies changes
  to the incoming half; `leave_joint` drops the outgoing half and turns learners_next
  into learners;
- a voter demoted to learner while still in the outgoing half waits in learners_next;
- removing every voter is refused. Invariants are checked on every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfChangeError
from ..quorum import JointConfig, MajorityConfig
from ..raftpb import (
    ConfChange,
    ConfChangeAddLearnerNode,
    ConfChangeAddNode,
    ConfChangeRemoveNode,
    ConfChangeSingle,
    ConfChangeTransitionAuto,
    ConfChangeTransitionJointExplicit,
    ConfChangeUpdateNode,
    ConfChangeV2,
)
from ..tracker import Progress, ProgressTracker, TrackerConfig

__all__ = ["Changer", "to_v2", "is_leave_joint", "enter_joint_of"]


def to_v2(cc: ConfChange | ConfChangeV2) -> ConfChangeV2:
    """A ConfChange as the equivalent single-change ConfChangeV2."""
    if isinstance(cc, ConfChangeV2):
        return cc
    return ConfChangeV2(changes=[ConfChangeSingle(type=cc.type, node_id=cc.node_id)], context=cc.context)


def is_leave_joint(cc: ConfChangeV2) -> bool:
    """An empty ConfChangeV2 (context aside) asks to leave the joint config."""
    return not cc.changes and cc.transition == ConfChangeTransitionAuto


def enter_joint_of(cc: ConfChangeV2) -> tuple[bool, bool]:
    """(auto_leave, uses_joint): a change uses joint consensus when it has more than one
    change or asks for a joint transition explicitly."""
    if cc.transition != ConfChangeTransitionAuto or len(cc.changes) > 1:
        return cc.transition != ConfChangeTransitionJointExplicit, True
    return False, False


@dataclass(slots=True)
class _Work:
    """A mutable copy of a configuration being changed."""

    incoming: set[int]
    outgoing: set[int]
    learners: set[int]
    learners_next: set[int]
    auto_leave: bool
    progress: dict[int, Progress]

    def freeze(self) -> tuple[TrackerConfig, dict[int, Progress]]:
        cfg = TrackerConfig(
            voters=JointConfig(MajorityConfig(self.incoming), MajorityConfig(self.outgoing)),
            auto_leave=self.auto_leave,
            learners=frozenset(self.learners),
            learners_next=frozenset(self.learners_next),
        )
        _check_invariants(cfg, self.progress)
        return cfg, self.progress


def _check_invariants(cfg: TrackerConfig, prs: dict[int, Progress]) -> None:
    for vid in cfg.voters.ids() | cfg.learners | cfg.learners_next:
        if vid not in prs:
            raise ConfChangeError(f"no progress for {vid}")
    for vid in cfg.learners_next:
        if vid not in cfg.voters.outgoing:
            raise ConfChangeError(f"{vid} is in learners_next, but not outgoing")
        if prs[vid].is_learner:
            raise ConfChangeError(f"{vid} is in learners_next, but is already marked as learner")
    for vid in cfg.learners:
        if vid in cfg.voters.outgoing:
            raise ConfChangeError(f"{vid} is in learners and outgoing voters")
        if vid in cfg.voters.incoming:
            raise ConfChangeError(f"{vid} is in learners and incoming voters")
        if not prs[vid].is_learner:
            raise ConfChangeError(f"{vid} is in learners, but is not marked as learner")
    if not cfg.voters.is_joint:
        if cfg.learners_next:
            raise ConfChangeError("learners_next must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("auto_leave must be false when not joint")


class Changer:
    """Computes configuration changes from a tracker's current config and the log's
    last index (new peers start probing there)."""

    __slots__ = ("tracker", "last_index")

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def _copy(self) -> _Work:
        cfg = self.tracker.config
        _check_invariants(cfg, self.tracker.progress)
        return _Work(
            incoming=set(cfg.voters.incoming),
            outgoing=set(cfg.voters.outgoing),
            learners=set(cfg.learners),
            learners_next=set(cfg.learners_next),
            auto_leave=cfg.auto_leave,
            progress={vid: pr.clone() for vid, pr in self.tracker.progress.items()},
        )

    def enter_joint(self, auto_leave: bool, ccs: Sequence[ConfChangeSingle]) -> tuple[TrackerConfig, dict[int, Progress]]:
        w = self._copy()
        if w.outgoing:
            raise ConfChangeError("config is already joint")
        if not w.incoming:
            # A zero-voter config is only possible for a joining node; it cannot
            # become joint.
            raise ConfChangeError("can't make a zero-voter config joint")
        w.outgoing = set(w.incoming)
        self._apply(w, ccs)
        w.auto_leave = auto_leave
        return w.freeze()

    def leave_joint(self) -> tuple[TrackerConfig, dict[int, Progress]]:
        w = self._copy()
        if not w.outgoing:
            raise ConfChangeError("can't leave a non-joint config")
        for vid in w.learners_next:
            w.learners.add(vid)
            w.progress[vid].is_learner = True
        w.learners_next = set()
        for vid in w.outgoing:
            if vid not in w.incoming and vid not in w.learners:
                del w.progress[vid]
        w.outgoing = set()
        w.auto_leave = False
        return w.freeze()

    def simple(self, ccs: Sequence[ConfChangeSingle]) -> tuple[TrackerConfig, dict[int, Progress]]:
        w = self._copy()
        if w.outgoing:
            raise ConfChangeError("can't apply simple config change in joint config")
        before = set(w.incoming)
        self._apply(w, ccs)
        if len(before ^ w.incoming) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        return w.freeze()

    def _apply(self, w: _Work, ccs: Sequence[ConfChangeSingle]) -> None:
        for cc in ccs:
            nid = cc.node_id
            if nid == 0:
                continue  # etcd ignores changes to node 0
            t = cc.type
            if t == ConfChangeAddNode:
                self._make_voter(w, nid)
            elif t == ConfChangeAddLearnerNode:
                self._make_learner(w, nid)
            elif t == ConfChangeRemoveNode:
                self._remove(w, nid)
            elif t == ConfChangeUpdateNode:
                pass
            else:
                raise ConfChangeError(f"unexpected conf change type {t}")
        if not w.incoming:
            raise ConfChangeError("removed all voters")

    def _make_voter(self, w: _Work, nid: int) -> None:
        pr = w.progress.get(nid)
        if pr is None:
            self._init_progress(w, nid, is_learner=False)
            return
        pr.is_learner = False
        w.learners.discard(nid)
        w.learners_next.discard(nid)
        w.incoming.add(nid)

    def _make_learner(self, w: _Work, nid: int) -> None:
        pr = w.progress.get(nid)
        if pr is None:
            self._init_progress(w, nid, is_learner=True)
            return
        if pr.is_learner:
            return
        # Remove any voter role in the incoming config, but keep the Progress.
        self._remove(w, nid)
        w.progress[nid] = pr
        # A peer still voting in the outgoing config becomes a learner only when the
        # joint config is left.
        if nid in w.outgoing:
            w.learners_next.add(nid)
        else:
            pr.is_learner = True
            w.learners.add(nid)

    def _remove(self, w: _Work, nid: int) -> None:
        if nid not in w.progress:
            return
        w.incoming.discard(nid)
        w.learners.discard(nid)
        w.learners_next.discard(nid)
        # A peer still voting in the outgoing config keeps its Progress.
        if nid not in w.outgoing:
            del w.progress[nid]

    def _init_progress(self, w: _Work, nid: int, *, is_learner: bool) -> None:
        if is_learner:
            w.learners.add(nid)
        else:
            w.incoming.add(nid)
        # Probing starts at the last index. A new peer counts as recently active, so
        # that CheckQuorum does not step the leader down before it was heard from.
        w.progress[nid] = Progress(
            match=0,
            next=max(self.last_index, 1),
            inflights=self.tracker.new_inflights(),
            is_learner=is_learner,
            recent_active=True,
        )
