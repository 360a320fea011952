"""A list-append workload, as Jepsen's Elle uses, over reference data nodes: KEYS keys,
each a list of integers (JSON), spread over one tablet per group ("la1" at group 1, ...),
and a cold key per group, written once at the start ([-group]) and then only read (once
safe_ts passes that write, garbage collection must keep it). A transaction picks 1-4
keys and reads each; for about half of the keys other than the cold ones it also
appends a value no other append carries (the list read plus the value, written back: the write
conflicts with any concurrent append to the key, first committer wins).

Records (txn_workload): `reads` {key: list read at read_ts}, `appends` {key: value},
`writes` {key: list written}. The final read after the run is f="final".

Checkers, beside txn_checks.py's (decisions, realtime, snapshots - which, with the
commit timestamps, says exactly which appends a read must show - first_committer_wins,
watermark), these read only what clients saw, as Elle does:

    prefixes       every list read of a key is a prefix of the longest one read, with
                   no value twice: all reads agree with one order of the appends per key
    aborted_reads  no read shows a value whose append aborted (G1a) or that nobody
                   appended, nor one appended by a transaction that began after the read
                   had returned (a read from the future)
    lost_updates   no two committed transactions appended to a key after reading the
                   same list of it (P4, lost update; SI forbids it), and every committed
                   append is in the final read of its key
    fractured      a read sees a committed transaction's appends to all the keys it read
                   or to none of them (every read a consistent snapshot: atomic
                   visibility)
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zero.datanode.txn import Txn, TxnClient

from .history import OK, Op
from .txn_checks import decision
from .txn_workload import TxnWorkload, run_txn

__all__ = ["KEYS", "keys", "setup", "step", "final_read", "final_lists", "prefixes", "aborted_reads", "lost_updates", "fractured",
           "minimums"]

KEYS = 8


def keys(groups: Sequence[int], n: int = KEYS) -> list[str]:
    """Key names "<tablet>/k<i>": key i in group groups[i % len(groups)]'s tablet."""
    return [f"la{groups[i % len(groups)]}/k{i}" for i in range(n)]


def _addr(name: str) -> tuple[str, bytes]:
    t, _, k = name.partition("/")
    return t, k.encode()


def _list(v: bytes | None) -> list[int]:
    return list(json.loads(v)) if v else []


async def setup(wl: TxnWorkload, groups: Sequence[int]) -> Op:
    """Claim each group's tablet for it, then write the cold keys in one transaction,
    and again in another; the last of them."""
    assert wl.zc is not None and wl.tc is not None
    cold = [f"la{g}/cold" for g in groups]
    wl.state["keys"] = keys(groups)
    wl.state["cold"] = cold
    wl.state["next"] = 0
    for g in groups:
        await wl.zc.should_serve(f"la{g}", g)
    for _ in range(200):
        if all(wl.zc.group_for(f"la{g}") == g for g in groups):
            break
        await asyncio.sleep(0.05)
    for _ in range(50):
        async def body(t: Txn) -> dict[str, Any]:
            appends = {k: -g for k, g in zip(cold, groups)}
            for k, v in appends.items():
                t.put(*_addr(k), json.dumps([v]).encode())
            return {"read_ts": t.start_ts, "reads": {k: [] for k in cold}, "appends": appends,
                    "writes": {k: [v] for k, v in appends.items()}}
        op = await run_txn(wl.h, "setup", "open", wl.tc.begin, body)
        wl.track(op)
        if op.type == OK:
            break
    else:
        raise AssertionError(f"the cold keys could not be written: {op.error}")
    # Written again, the same lists: two versions, both of which safe_ts passes, for
    # garbage collection to work on (it must keep the newer).
    for _ in range(50):
        async def again(t: Txn) -> dict[str, Any]:
            for k, g in zip(cold, groups):
                t.put(*_addr(k), json.dumps([-g]).encode())
            return {"read_ts": t.start_ts, "reads": {}, "writes": {k: [-g] for k, g in zip(cold, groups)}}
        second = await run_txn(wl.h, "setup", "open", wl.tc.begin, again)
        wl.track(second)
        if second.type == OK:
            return second
    raise AssertionError(f"the cold keys could not be written again: {second.error}")


async def step(wl: TxnWorkload, tc: TxnClient, rng: random.Random, process: str) -> None:
    names: list[str] = rng.sample(wl.state["keys"] + wl.state["cold"], rng.randint(1, 4))
    appending = [k for k in names if rng.random() < 0.5 and k not in wl.state["cold"]]

    async def body(t: Txn) -> dict[str, Any]:
        got = await t.get_many([_addr(k) for k in names])
        lists = {k: _list(v) for k, v in zip(names, got)}
        appends, writes = {}, {}
        for k in appending:
            wl.state["next"] += 1
            v = appends[k] = wl.state["next"]
            writes[k] = lists[k] + [v]
            t.put(*_addr(k), json.dumps(writes[k]).encode())
        return {"read_ts": t.start_ts, "reads": lists, "appends": appends, "writes": writes}
    wl.track(await run_txn(wl.h, process, "txn", tc.begin, body))


async def final_read(wl: TxnWorkload) -> Op:
    """Every key, in one transaction (recorded as f="final")."""
    assert wl.tc is not None
    names: list[str] = wl.state["keys"] + wl.state["cold"]

    async def body(t: Txn) -> dict[str, Any]:
        got = await t.get_many([_addr(k) for k in names])
        return {"read_ts": t.start_ts, "reads": {k: _list(v) for k, v in zip(names, got)}}
    op = await run_txn(wl.h, "final", "final", wl.tc.begin, body)
    wl.track(op)
    return op


def _reads(ops: Iterable[Op]) -> list[Op]:
    return [o for o in ops if o.f in ("txn", "final") and "reads" in o.value]


def prefixes(ops: Iterable[Op]) -> list[str]:
    longest: dict[str, tuple[list[int], Op]] = {}
    rs = _reads(ops)
    for o in rs:
        for k, got in o.value["reads"].items():
            if len(got) > len(longest.get(k, ([], o))[0]):
                longest[k] = (got, o)
    out = []
    for o in rs:
        for k, got in o.value["reads"].items():
            if len(set(got)) != len(got):
                out.append(f"prefixes: {k} read with a value twice: {got} by {o.process}@{o.invoke:.3f}")
            top, by = longest[k]
            if top[:len(got)] != got:
                out.append(f"prefixes: {k} read as {got} by {o.process}@{o.invoke:.3f}, which is no prefix of "
                           f"{top} read by {by.process}@{by.invoke:.3f}: no one order of its appends")
    return out


def _appenders(ops: Iterable[Op]) -> dict[int, tuple[str, Op]]:
    out = {}
    for o in ops:
        for k, v in (o.value.get("appends") or {}).items():
            out[v] = (k, o)
    return out


def aborted_reads(ops: Iterable[Op]) -> list[str]:
    ops = list(ops)
    by_value = _appenders(ops)
    out = []
    for o in _reads(ops):
        for k, got in o.value["reads"].items():
            for v in got:
                who = by_value.get(v)
                if who is None or who[0] != k:
                    out.append(f"aborted_reads: {k} read with {v}, which no transaction appended to it: {o.value}")
                    continue
                w = who[1]
                if decision(w) == ("abort", 0):
                    out.append(f"aborted_reads: {k} read with {v}, appended by an aborted transaction (G1a): "
                               f"read {o.value} of {o.process}; append {w.value} of {w.process}")
                elif w.invoke > o.complete:
                    out.append(f"aborted_reads: {k} read with {v} before the transaction appending it began: "
                               f"read {o.process}@{o.invoke:.3f}-{o.complete:.3f}, append {w.process}@{w.invoke:.3f}")
    return out


def lost_updates(ops: Iterable[Op], final: Mapping[str, list[int]]) -> list[str]:
    out = []
    per: dict[tuple[str, str], Op] = {}
    for o in ops:
        d = decision(o)
        if d is None or d[0] != "commit":
            continue
        for k, v in (o.value.get("appends") or {}).items():
            seen = json.dumps(o.value["reads"][k])
            other = per.get((k, seen))
            if other is not None:
                out.append(f"lost_updates: two committed transactions appended to {k} after reading the same "
                           f"{seen}: {other.value} and {o.value}")
            per[(k, seen)] = o
            if k in final and v not in final[k]:
                out.append(f"lost_updates: the committed append of {v} to {k} is missing from the final read "
                           f"{final[k]}: {o.value}")
    return out


def fractured(ops: Iterable[Op]) -> list[str]:
    ops = list(ops)
    writers = [o for o in ops if len(o.value.get("appends") or {}) > 1 and decision(o) != ("abort", 0)]
    out = []
    for r in _reads(ops):
        seen = {k: set(v) for k, v in r.value["reads"].items()}
        for w in writers:
            if w is r:
                continue
            shared = [k for k in w.value["appends"] if k in seen]
            vis = {k: w.value["appends"][k] in seen[k] for k in shared}
            if len(set(vis.values())) > 1:
                out.append(f"fractured: {r.process}'s read at {r.value.get('read_ts')} sees some of one transaction's "
                           f"appends and not others ({vis}): read {r.value['reads']}; writer {w.value}")
    return out


def minimums(clients: int) -> dict[str, int]:
    return {"txn": 10 * clients}


def final_lists(op: Op) -> dict[str, list[int]]:
    return dict(op.value["reads"]) if op.type == OK else {}

