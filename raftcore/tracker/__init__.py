"""Per-peer replication progress, the inflight window, and the tracked configuration
(etcd tracker/). See docs/DESIGN.md for the probe/replicate/snapshot states."""

from .inflights import Inflights
from .progress import Progress, ProgressState
from .tracker import ProgressTracker, TrackerConfig

__all__ = ["Inflights", "Progress", "ProgressState", "ProgressTracker", "TrackerConfig"]
