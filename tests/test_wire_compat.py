"""Wire compatibility of released protobuf messages (docs/DESIGN.md "Versions and upgrades").

tests/data/wire_v1.json records every field (number, type, repeated, message/enum type) of
every message and every enum value of raft.proto and the zero.v1 protos as released. A
field whose number, type or cardinality changed, or that disappeared, breaks zeros of the other
release in a rolling upgrade (and every file written before), so this test fails. New
fields, messages and enum values are fine: record them with

    .venv/bin/python tests/test_wire_compat.py --update

which adds what is new and never rewrites what is recorded. A field that must go is
kept as `reserved` in the .proto and stays in the record."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECORD = ROOT / "tests" / "data" / "wire_v1.json"
sys.path.insert(0, str(ROOT))


def _files() -> list[Any]:
    from raftcore.raftpb import raft_pb2
    from zero.pb import datanode_pb2, raft_transport_pb2, state_pb2, zero_pb2
    return [m.DESCRIPTOR for m in (raft_pb2, zero_pb2, state_pb2, raft_transport_pb2, datanode_pb2)]


def _walk_messages(descs: Any) -> Any:
    for d in descs:
        yield d
        yield from _walk_messages(d.nested_types)


def _repeated(fd: Any) -> bool:
    rep = getattr(fd, "is_repeated", None)  # protobuf >= 5.29; `label` before (and gone in 6)
    return bool(rep) if rep is not None else fd.label == 3


def current() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    for f in _files():
        for m in _walk_messages(f.message_types_by_name.values()):
            messages[m.full_name] = {
                fd.name: {"number": fd.number, "type": fd.type, "repeated": _repeated(fd),
                          "type_name": (fd.message_type.full_name if fd.message_type is not None
                                        else fd.enum_type.full_name if fd.enum_type is not None else "")}
                for fd in m.fields}
            for e in m.enum_types:
                enums[e.full_name] = {v.name: v.number for v in e.values}
        for e in f.enum_types_by_name.values():
            enums[e.full_name] = {v.name: v.number for v in e.values}
    return {"messages": messages, "enums": enums}


def test_released_fields_keep_their_numbers_and_types() -> None:
    recorded = json.loads(RECORD.read_text())
    now = current()
    problems = []
    for name, fields in recorded["messages"].items():
        have = now["messages"].get(name)
        if have is None:
            problems.append(f"message {name} is gone")
            continue
        numbers = {v["number"]: k for k, v in have.items()}
        for fname, want in fields.items():
            got = have.get(fname)
            if got is None:
                problems.append(f"{name}.{fname} (field {want['number']}) is gone; keep it or reserve it")
            elif got != want:
                problems.append(f"{name}.{fname} changed from {want} to {got}")
            if want["number"] in numbers and numbers[want["number"]] != fname:
                problems.append(f"{name}: field number {want['number']} of {fname} is reused by "
                                f"{numbers[want['number']]}")
    for name, values in recorded["enums"].items():
        have = now["enums"].get(name)
        if have is None:
            problems.append(f"enum {name} is gone")
            continue
        for vname, number in values.items():
            if have.get(vname) != number:
                problems.append(f"enum value {name}.{vname} changed from {number} to {have.get(vname)}")
    assert not problems, "wire-incompatible proto changes:\n" + "\n".join(problems)


def test_the_record_covers_every_message() -> None:
    recorded = json.loads(RECORD.read_text())
    now = current()
    missing = [n for n in now["messages"] if n not in recorded["messages"]]
    missing += [f"{n}.{f}" for n, fs in now["messages"].items() if n in recorded["messages"]
                for f in fs if f not in recorded["messages"][n]]
    assert not missing, f"new fields or messages are not recorded; run {__file__} --update: {missing[:10]}"


def update() -> None:
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {"messages": {}, "enums": {}}
    now = current()
    for kind in ("messages", "enums"):
        for name, items in now[kind].items():
            rec = recorded[kind].setdefault(name, {})
            for k, v in items.items():
                rec.setdefault(k, v)  # never rewrite what was released
    RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"updated {RECORD}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit(f"usage: {sys.argv[0]} --update")
