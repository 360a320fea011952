"""Configuration changes as pure functions (etcd confchange/): validate a change against
the current configuration and return a *new* configuration and progress map, leaving
the inputs untouched. Simple changes alter at most one voter; anything else goes
through joint consensus (thesis §4.3)."""

from .changer import Changer, enter_joint_of, is_leave_joint, to_v2
from .restore import restore

__all__ = ["Changer", "restore", "to_v2", "is_leave_joint", "enter_joint_of"]
