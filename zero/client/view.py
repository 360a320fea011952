"""MembershipView: the membership state a client rebuilds from StreamMembership updates
(a full state in chunks, then deltas), with a tablet → group index, so that
group_for(tablet) is answered without a round trip."""

from __future__ import annotations

from zero.pb import zero_pb2
from zero.state.chunks import merge_chunk

__all__ = ["MembershipView"]


class MembershipView:
    """The membership state rebuilt from StreamMembership updates, with a tablet →
    group index."""

    def __init__(self) -> None:
        self.state: zero_pb2.MembershipState | None = None
        self.version = 0
        self.cluster_id = ""
        self._pending = zero_pb2.MembershipState()
        self._owner: dict[str, int] = {}

    def group_for(self, tablet: str) -> int:
        """The group serving `tablet` in the latest state seen; 0 when unowned."""
        return self._owner.get(tablet, 0)

    def feed(self, u: zero_pb2.MembershipUpdate) -> bool:
        """Apply one update; True when the view changed to a new complete state."""
        if u.full:
            merge_chunk(self._pending, u.state)
            if not u.last_chunk:
                return False
            self.state, self._pending = self._pending, zero_pb2.MembershipState()
            self._owner = {n: gid for gid, g in self.state.groups.items() for n in g.tablets}
        else:
            st = self.state
            if st is None:
                return False
            for gid, g in u.state.groups.items():
                dst = st.groups[gid]
                for mid, m in g.members.items():
                    dst.members[mid].CopyFrom(m)
                for name, t in g.tablets.items():
                    old = self._owner.get(name)
                    if old is not None and old != gid:
                        del st.groups[old].tablets[name]
                    dst.tablets[name].CopyFrom(t)
                    self._owner[name] = gid
            for zid, z in u.state.zeros.items():
                st.zeros[zid].CopyFrom(z)
            for name in u.removed_tablets:
                owner = self._owner.pop(name, 0)
                if owner:
                    del st.groups[owner].tablets[name]
            for mid in u.removed_members:
                for g in st.groups.values():
                    if mid in g.members:
                        del g.members[mid]
            for zid in u.removed_zeros:
                if zid in st.zeros:
                    del st.zeros[zid]
            for fd, value in u.state.ListFields():  # scalar header fields, current values
                if fd.message_type is None and not fd.is_repeated:
                    setattr(st, fd.name, value)
            st.version = u.version
        self.version, self.cluster_id = u.version, u.cluster_id
        return True
