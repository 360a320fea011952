"""Rebuild a tracked configuration from a ConfState (etcd confchange/restore.go).

A joint ConfState is reached by first building the outgoing config with simple
changes, then entering the joint config with the incoming changes.
"""

from __future__ import annotations

from ..raftpb import (
    ConfChangeAddLearnerNode,
    ConfChangeAddNode,
    ConfChangeRemoveNode,
    ConfChangeSingle,
    ConfState,
)
from ..tracker import Progress, ProgressTracker, TrackerConfig
from .changer import Changer

__all__ = ["restore"]


def restore(tracker: ProgressTracker, last_index: int, cs: ConfState) -> tuple[TrackerConfig, dict[int, Progress]]:
    outgoing = [ConfChangeSingle(type=ConfChangeAddNode, node_id=i) for i in cs.voters_outgoing]
    incoming = [ConfChangeSingle(type=ConfChangeRemoveNode, node_id=i) for i in cs.voters_outgoing]
    incoming += [ConfChangeSingle(type=ConfChangeAddNode, node_id=i) for i in cs.voters]
    incoming += [ConfChangeSingle(type=ConfChangeAddLearnerNode, node_id=i) for i in cs.learners]
    incoming += [ConfChangeSingle(type=ConfChangeAddLearnerNode, node_id=i) for i in cs.learners_next]

    # Work on a scratch tracker so that `tracker` stays untouched.
    scratch = ProgressTracker(tracker.max_inflight, tracker.max_inflight_bytes)
    scratch.set(tracker.config, {k: v.clone() for k, v in tracker.progress.items()})

    def simple(cc: ConfChangeSingle) -> None:
        cfg, prs = Changer(scratch, last_index).simple([cc])
        scratch.set(cfg, prs)

    if not outgoing:
        for cc in incoming:
            simple(cc)
    else:
        for cc in outgoing:
            simple(cc)
        cfg, prs = Changer(scratch, last_index).enter_joint(cs.auto_leave, incoming)
        scratch.set(cfg, prs)
    return scratch.config, scratch.progress
