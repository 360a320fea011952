"""The replicated state's snapshot bytes: format header, encoding, decoding, and the
invariants a decoded state must satisfy before it is used.

Layout: 4 bytes of magic, ``ZST`` and the format byte, then the CRC-32 (big-endian) of
the payload, then the payload, a deterministic serialization of ZeroStateSnapshot. Equal
states give equal bytes, which is how the tests (and operators comparing replicas) see
that every zero applied the same log. A file of another format is refused as such, not
as damage (zero/state/versions.py).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from zero.errors import CorruptStateError
from zero.pb import state_pb2
from zero.state.tables import Tables

__all__ = ["FORMAT", "empty", "frame", "encode", "decode", "check"]

FORMAT = 1
_MAGIC = b"ZST\x01"  # file magic + format byte; then CRC-32 (big-endian) of the payload
_HEADER = struct.Struct(">4sI")


def empty() -> state_pb2.ZeroStateSnapshot:
    """The snapshot of a new cluster: nothing in it, every id counter at 1."""
    return state_pb2.ZeroStateSnapshot(format=FORMAT, next_member_id=1, next_raft_id=1, next_move_id=1)


def frame(payload: bytes) -> bytes:
    """Snapshot bytes: magic and CRC-32 of the payload, then the payload."""
    return _HEADER.pack(_MAGIC, zlib.crc32(payload)) + payload


def encode(t: Tables, dedup: Iterable[state_pb2.DedupRecord]) -> bytes:
    """The payload: the snapshot message with the move records, dedup records and the
    oracle's state, which live outside it in memory (the hot path appends to Python
    containers), put back in for the serialization only."""
    snap = t.snap
    del snap.moves[:]
    snap.moves.extend(t.moves.values())
    del snap.dedup[:]
    snap.dedup.extend(dedup)
    oracle = t.oracle.to_proto()
    if oracle.ByteSize():  # an empty oracle adds no bytes: snapshots of before stay identical
        snap.oracle.CopyFrom(oracle)
    payload = snap.SerializeToString(deterministic=True)
    del snap.moves[:]
    del snap.dedup[:]
    snap.ClearField("oracle")
    return bytes(payload)


def decode(data: bytes) -> state_pb2.ZeroStateSnapshot:
    """The snapshot message in ``frame()``d bytes; CorruptStateError says what is wrong."""
    if len(data) < _HEADER.size:
        raise CorruptStateError(f"zero state snapshot is truncated ({len(data)} bytes)")
    magic, crc = _HEADER.unpack_from(data)
    if magic[:3] != _MAGIC[:3]:
        raise CorruptStateError("not a zero state snapshot (bad magic)")
    if magic != _MAGIC:
        raise CorruptStateError(f"zero state snapshot format {magic[3]} is not supported (want {FORMAT})")
    payload = bytes(data[_HEADER.size:])
    if zlib.crc32(payload) != crc:
        raise CorruptStateError("zero state snapshot is corrupt (CRC mismatch)")
    snap = state_pb2.ZeroStateSnapshot()
    try:
        snap.ParseFromString(payload)
    except DecodeError as e:
        raise CorruptStateError(f"zero state snapshot does not parse: {e}") from None
    if snap.format != FORMAT:
        raise CorruptStateError(f"zero state snapshot format {snap.format} is not supported")
    return snap


def check(t: Tables) -> None:
    """Invariants a restored snapshot must satisfy (the module docstring of
    zero/state/machine.py states them); CorruptStateError lists every one broken."""
    st, snap = t.state, t.snap
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for gid, group in st.groups.items():
        need(gid != 0, "group 0 exists")
        for name, tablet in group.tablets.items():
            need(tablet.predicate == name and tablet.group_id == gid, f"tablet {name!r} misfiled in group {gid}")
        for mid, m in group.members.items():
            need(m.id == mid and m.group_id == gid, f"member {mid} misfiled in group {gid}")
            need(0 < mid < snap.next_member_id, f"member id {mid} not below next_member_id")
            need(mid not in t.removed_members, f"member {mid} is both present and removed")
    for rid, z in st.zeros.items():
        need(z.id == rid and z.group_id == 0, f"zero {rid} misfiled")
        need(0 < rid < snap.next_raft_id, f"zero id {rid} not below next_raft_id")
        need(rid not in t.removed_zeros, f"zero {rid} is both present and removed")
    for rid in snap.zero_versions:
        need(rid in st.zeros, f"zero {rid} has a version but is not a member")
    need(len(t.addr_member) == len(t.member_group), "two members share an address")
    need(len(t.addr_zero) == len(st.zeros), "two zeros share an address")
    active = snap.active_move_id
    for mid, r in t.moves.items():
        need(0 < mid < snap.next_move_id, f"move id {mid} not below next_move_id")
        in_progress = r.phase in (state_pb2.MOVE_COPYING, state_pb2.MOVE_FENCED)
        need(in_progress == (mid == active), f"move {mid} has phase {r.phase}")
        need(r.phase != state_pb2.MOVE_FENCED or r.record_version >= 4, f"move {mid} is fenced but of version 0")
    # Read-only exactly while fenced: a version-4 record in FENCED, an older one from its start.
    current = t.moves.get(active)
    fenced = current is not None and (current.phase == state_pb2.MOVE_FENCED or not current.record_version)
    moving = current.predicate if current is not None and fenced else None
    for gid, group in st.groups.items():
        for name, tablet in group.tablets.items():
            need(tablet.read_only == (name == moving), f"tablet {name!r} read_only={tablet.read_only} "
                 f"but {'it is' if name == moving else 'it is not'} in a move's fenced phase")
    if active:
        current = t.moves.get(active)
        need(current is not None and t.owner.get(current.predicate) == current.src_group,
             f"active move {active} does not match its tablet")
    if problems:
        raise CorruptStateError("zero state snapshot is inconsistent: " + "; ".join(problems))
