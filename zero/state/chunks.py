"""The membership state in messages of at most 1 MiB, and back (pure).

StreamMembership sends a full state as chunks (`full`, applied by the client at
`last_chunk`); zero.client and the stream's tests merge them with merge_chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

from zero.pb import zero_pb2

__all__ = ["CHUNK_BYTES", "LIVENESS_SLACK", "full_state_chunks", "iter_full_state_chunks", "merge_chunk",
           "copy_header", "copy_scalars"]

CHUNK_BYTES = 1 << 20  # SPEC: full state in messages of at most 1 MiB

# Room left in a chunk for each member and zero whose liveness fields (healthy,
# last_heartbeat_ms, leader) are filled in after chunking: at most 2 + 11 + 2 bytes.
LIVENESS_SLACK = 16


def full_state_chunks(state: zero_pb2.MembershipState, limit: int = CHUNK_BYTES,
                      slack: int = 0) -> list[zero_pb2.MembershipUpdate]:
    """`state` split into MembershipUpdates of at most `limit` serialized bytes each
    (a single member or tablet larger than that goes alone). The first chunk carries
    the header fields and the zeros; later chunks carry parts of groups."""
    return list(iter_full_state_chunks(state, limit, slack))


def iter_full_state_chunks(state: zero_pb2.MembershipState, limit: int = CHUNK_BYTES,
                           slack: int = 0) -> Iterator[zero_pb2.MembershipUpdate]:
    """full_state_chunks one chunk at a time (copies: `state` is only read, and only
    one chunk is alive at a time). `slack` bytes are reserved per member and zero for
    fields a caller fills in afterwards, so the chunks stay within `limit` then too.
    The last chunk has `last_chunk` set."""
    head = zero_pb2.MembershipState()
    copy_header(head, state)
    cur = head
    size = cur.ByteSize() + slack * len(state.zeros)
    # A map entry costs its value plus a few bytes of key and framing.
    overhead = 16

    def update(part: zero_pb2.MembershipState) -> zero_pb2.MembershipUpdate:
        return zero_pb2.MembershipUpdate(version=state.version, cluster_id=state.cluster_id, full=True, state=part)

    def fresh() -> zero_pb2.MembershipState:
        return zero_pb2.MembershipState(version=state.version, cluster_id=state.cluster_id)

    for gid, group in state.groups.items():
        # Every group appears at least once, even when empty.
        cur.groups[gid]
        size += overhead
        for mid, m in group.members.items():
            s = m.ByteSize() + overhead + slack
            if size + s > limit and size > overhead * 2:
                yield update(cur)
                cur = fresh()
                size = cur.ByteSize()
            cur.groups[gid].members[mid].CopyFrom(m)
            size += s
        for name, t in group.tablets.items():
            s = t.ByteSize() + len(name) + overhead
            if size + s > limit and size > overhead * 2:
                yield update(cur)
                cur = fresh()
                size = cur.ByteSize()
            cur.groups[gid].tablets[name].CopyFrom(t)
            size += s
    last = update(cur)
    last.last_chunk = True
    yield last


def merge_chunk(into: zero_pb2.MembershipState, part: zero_pb2.MembershipState) -> None:
    """Accumulate one chunk of a full state. Chunks split groups, and protobuf's
    MergeFrom on a map replaces whole values, so groups are merged one by one."""
    for gid, g in part.groups.items():
        into.groups[gid].MergeFrom(g)
    copy_header(into, part)


def copy_header(into: zero_pb2.MembershipState, part: zero_pb2.MembershipState) -> None:
    """Every field but `groups` that `part` sets, generically: a header field added to
    MembershipState later (cluster_version was) travels in the first chunk without a
    change here."""
    for fd, value in part.ListFields():
        if fd.name == "groups":
            continue
        if fd.message_type is not None:  # a map, a repeated field or a message
            getattr(into, fd.name).MergeFrom(value)
        else:
            setattr(into, fd.name, value)


def copy_scalars(into: zero_pb2.MembershipState, part: zero_pb2.MembershipState) -> None:
    """The scalar header fields (version, cluster id, lease maxima, cluster version,
    and any added later): every delta carries their current values."""
    for fd, value in part.ListFields():
        if fd.message_type is None and not fd.is_repeated:
            setattr(into, fd.name, value)
