"""The Jepsen bank workload over reference data nodes: ACCOUNTS accounts, each holding
INITIAL, spread over one tablet per group ("bank1" at group 1, ...), plus a reserve
account no transfer touches (written once: once safe_ts passes that write, garbage
collection must keep it). Clients transfer a random amount between two random accounts in a transaction (read both at start_ts, write
both if the source can pay: a read-write transaction on two keys, across groups when the
accounts are) and read every account at once, half of the time in a transaction (its
start_ts from zero; it then commits, read-only) and half in a snapshot at the oracle's
max_assigned (read_timestamp).

Records (txn_workload): a transfer's `reads` and `writes` {account: balance} and its
`read_ts`; a full read's `reads` {account: balance} (f="read", args kind "txn" or
"snapshot"). Keys in the history are "<tablet>/<key>".

Checkers: `total` (every full read finds every account, the total unchanged, no
balance below zero), and the shared ones of txn_checks.py: decisions, realtime,
snapshots (every read - transfers' too - equals the replay of the commits below it),
first_committer_wins, watermark.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from typing import Any

from zero.datanode.txn import Txn, TxnClient

from .history import FAIL, OK, Op
from .txn_workload import TxnWorkload, run_txn

__all__ = ["ACCOUNTS", "RESERVE", "INITIAL", "accounts", "setup", "step", "final_read", "total", "minimums"]

ACCOUNTS = 8
RESERVE = 1  # accounts after the ACCOUNTS that transfers never touch
INITIAL = 100


def accounts(groups: Sequence[int], n: int = ACCOUNTS + RESERVE) -> list[tuple[str, bytes]]:
    """(tablet, key) of each account: account i in group groups[i % len(groups)]'s
    tablet; the last RESERVE of them are the reserve."""
    return [(f"bank{groups[i % len(groups)]}", b"a%d" % i) for i in range(n)]


def _name(a: tuple[str, bytes]) -> str:
    return f"{a[0]}/{a[1].decode()}"


def _int(v: bytes | None) -> int | None:
    return int(v) if v is not None else None


async def setup(wl: TxnWorkload, groups: Sequence[int]) -> Op:
    """Claim each group's tablet for it, then one transaction opens every account and
    another writes the reserve again; the last of them."""
    assert wl.zc is not None and wl.tc is not None
    accts = accounts(groups)
    wl.state["accounts"] = accts
    for g in groups:
        await wl.zc.should_serve(f"bank{g}", g)
    for _ in range(50):
        await _synced(wl, groups)

        async def body(t: Txn) -> dict[str, Any]:
            for a in accts:
                t.put(*a, b"%d" % INITIAL)
            return {"read_ts": t.start_ts, "reads": {}, "writes": {_name(a): INITIAL for a in accts}}
        op = await run_txn(wl.h, "setup", "open", wl.tc.begin, body)
        wl.track(op)
        if op.type == OK:
            break
    else:
        raise AssertionError(f"the accounts could not be opened: {op.error}")
    # The reserve written again: a key of two versions, both of which safe_ts passes,
    # is one garbage collection works on (it must keep the newer).
    for _ in range(50):
        async def again(t: Txn) -> dict[str, Any]:
            for a in accts[ACCOUNTS:]:
                t.put(*a, b"%d" % INITIAL)
            return {"read_ts": t.start_ts, "reads": {}, "writes": {_name(a): INITIAL for a in accts[ACCOUNTS:]}}
        second = await run_txn(wl.h, "setup", "open", wl.tc.begin, again)
        wl.track(second)
        if second.type == OK:
            return second
    raise AssertionError(f"the reserve could not be written again: {second.error}")


async def _synced(wl: TxnWorkload, groups: Sequence[int]) -> None:
    assert wl.zc is not None
    for _ in range(200):
        if all(wl.zc.group_for(f"bank{g}") == g for g in groups):
            return
        await asyncio.sleep(0.05)


async def step(wl: TxnWorkload, tc: TxnClient, rng: random.Random, process: str) -> None:
    accts: list[tuple[str, bytes]] = wl.state["accounts"]
    if rng.random() < 0.3:
        await _read(wl, tc, rng, process, accts)
        return
    a, b = rng.sample(accts[:ACCOUNTS], 2)
    amount = rng.randint(1, 5)

    async def body(t: Txn) -> dict[str, Any]:
        got = [_int(v) for v in await t.get_many([a, b])]
        rec: dict[str, Any] = {"read_ts": t.start_ts, "reads": {_name(a): got[0], _name(b): got[1]}, "writes": {}}
        if got[0] is not None and got[1] is not None and got[0] >= amount:
            t.put(*a, b"%d" % (got[0] - amount))
            t.put(*b, b"%d" % (got[1] + amount))
            rec["writes"] = {_name(a): got[0] - amount, _name(b): got[1] + amount}
        return rec
    op = await run_txn(wl.h, process, "transfer", tc.begin, body, src=_name(a), dst=_name(b), amount=amount)
    wl.track(op)


async def _read(wl: TxnWorkload, tc: TxnClient, rng: random.Random, process: str,
                accts: list[tuple[str, bytes]], kind: str = "") -> Op:
    """Every account at once: in a transaction (it then commits, read-only) or in a
    snapshot at max_assigned."""
    kind = kind or ("txn" if rng.random() < 0.5 else "snapshot")

    async def body(t: Txn) -> dict[str, Any]:
        got = await t.get_many(accts)
        return {"read_ts": t.start_ts, "reads": {_name(a): _int(v) for a, v in zip(accts, got)}}
    op = await run_txn(wl.h, process, "read", tc.snapshot if kind == "snapshot" else tc.begin, body, kind=kind)
    if kind != "snapshot":
        wl.track(op)
    elif "start_ts" in op.value:
        op.value["snapshot_ts"] = op.value.pop("start_ts")  # not a transaction: nothing to decide
    return op


async def final_read(wl: TxnWorkload) -> Op:
    """Every account, in a transaction (process "final")."""
    assert wl.tc is not None
    return await _read(wl, wl.tc, random.Random(), "final", wl.state["accounts"], kind="txn")


def total(ops: Iterable[Op], n: int = ACCOUNTS + RESERVE, initial: int = INITIAL) -> list[str]:
    """Every ok full read finds all `n` accounts, none below zero, summing to n * initial."""
    out = []
    for o in ops:
        if o.f != "read" or o.type != OK:
            continue
        bal = o.value["reads"]
        missing = [k for k, v in bal.items() if v is None]
        if len(bal) != n or missing:
            out.append(f"total: a read at {o.value['read_ts']} found {len(bal) - len(missing)} of {n} accounts "
                       f"(missing {missing}): {o.value}")
            continue
        if sum(bal.values()) != n * initial or min(bal.values()) < 0:
            out.append(f"total: a read at {o.value['read_ts']} ({o.args.get('kind')}) found {sum(bal.values())}, "
                       f"not {n * initial}, or a negative balance: {bal}")
    return out


def minimums(clients: int) -> dict[str, int]:
    """checkers.liveness' least ok answers in a bank run (per kind of op)."""
    return {"transfer": 10 * clients, "read": 5 * clients}

