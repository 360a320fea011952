"""The replicated state machine: a dict of str -> str.

It changes only through `apply(entry data)`, called for every committed normal entry in
log order on every node, so all nodes hold the same dict at the same applied index
(raftexample's kvstore.go). Proposals are small JSON objects; snapshots are the whole
dict as JSON. Anything random (the request id) is chosen before proposing, so applying
is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["KVStore", "Op", "encode_op", "decode_op"]


@dataclass(frozen=True, slots=True)
class Op:
    # Who proposed it and which request it answers: only the proposing process uses it,
    # to wake the HTTP request that waits for this entry to be applied.
    request_id: str
    # "put" or "delete".
    kind: str
    key: str
    value: str = ""


def encode_op(op: Op) -> bytes:
    return json.dumps(
        {"id": op.request_id, "op": op.kind, "key": op.key, "value": op.value},
        separators=(",", ":"),
    ).encode()


def decode_op(data: bytes) -> Op:
    d = json.loads(data)
    return Op(request_id=d["id"], kind=d["op"], key=d["key"], value=d.get("value", ""))


class KVStore:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def apply(self, data: bytes) -> Op:
        """Apply one committed proposal; returns it so the caller can wake its waiter."""
        op = decode_op(data)
        if op.kind == "put":
            self._data[op.key] = op.value
        elif op.kind == "delete":
            self._data.pop(op.key, None)
        # An unknown kind changes nothing, on every node alike.
        return op

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def snapshot(self) -> bytes:
        """The whole state, for DiskStorage.create_snapshot."""
        return json.dumps(self._data, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's (on restart, or one sent by the leader)."""
        self._data = json.loads(data) if data else {}
