"""Quorum math: commit indexes and vote outcomes for majority and joint configs.

Pure functions over sets of ids, as etcd/raft's quorum package. A JointConfig is the
pair (incoming, outgoing) used during joint consensus (thesis §4.3): a decision needs
a majority of *both* halves; an empty outgoing half means "not joint".
"""

from .joint import JointConfig
from .majority import INFINITE_INDEX, MajorityConfig, VoteResult

__all__ = ["MajorityConfig", "JointConfig", "VoteResult", "INFINITE_INDEX"]
