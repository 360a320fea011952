"""Checkers of the move workload (tests/fault/moves_workload.py): pure functions from the
history and what was read back after the heal to a list of violations, each a sentence
naming the ops involved. An empty list means the invariant held.

They encode SPEC "Semantics that must hold under faults" for tablet moves:
    keys            - 3, 5: no acknowledged write is lost by a move, a rollback or a crash;
                      the final owner serves each key's last acknowledged value (or a value
                      of a write that may have landed after it), never a refused write's
    writable        - 5: after the heal every tablet takes writes within a deadline, and no
                      move is left active in any zero's state
    owners          - 1: one owner per tablet in zero's final state, and the data nodes
                      agree: every other group refuses the tablet naming that owner;
                      sampled_owners: one owner in every state sampled during the run
    read_only_spans - 5: while the run goes on, no tablet stays read-only (for one move)
                      longer than a bound (the move timeout plus failover slack)
    put_errors      - 8: data nodes answer the workload only with the protocol's errors

Keys are written by one writer each, one call at a time, so the writes of a key are
ordered. A write that ended `info` (deadline, a node killed under it) may still land at
any later moment, so its value is always allowed; a `fail` write (FAILED_PRECONDITION:
refused before anything was stored) never is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .history import FAIL, INFO, OK, Op

__all__ = ["keys", "writable", "owners", "sampled_owners", "read_only_spans", "put_errors", "Key"]

Key = tuple[str, str]  # (tablet, key)


def _desc(o: Op) -> str:
    return f"{o.process}/{o.f}@{o.invoke:.3f}-{o.complete:.3f} {o.args.get('tablet')}:{o.args.get('key')}" \
           f"={o.args.get('value')} via g{o.args.get('group')} -> {o.type}{' ' + o.error if o.error else ''}"


def keys(ops: Iterable[Op], final: Mapping[Key, str | None]) -> list[str]:
    """`final[(tablet, key)]` is the value the tablet's final owner served (None: not
    found); every key any `put` op named must be in it."""
    per: dict[Key, list[Op]] = {}
    for o in ops:
        if o.f == "put":
            per.setdefault((o.args["tablet"], o.args["key"]), []).append(o)
    out: list[str] = []
    for k, writes in sorted(per.items()):
        if k not in final:
            out.append(f"keys: {k[0]}:{k[1]} was written but never read back")
            continue
        got = final[k]
        writes.sort(key=lambda o: o.invoke)
        oks = [o for o in writes if o.type == OK]
        last_ok = oks[-1] if oks else None
        if got is None:
            if last_ok is not None:
                out.append(f"keys: acknowledged write lost: {k[0]}:{k[1]} is not found at the final owner; "
                           f"last acknowledged: {_desc(last_ok)}")
            continue
        by_value = [o for o in writes if o.args["value"] == got]
        if not by_value:
            out.append(f"keys: {k[0]}:{k[1]} holds {got!r}, a value no write carried")
            continue
        src = by_value[-1]
        if src.type == FAIL:
            out.append(f"keys: {k[0]}:{k[1]} holds the value of a refused write: {_desc(src)}")
        elif last_ok is not None and src is not last_ok and src.type != INFO:
            out.append(f"keys: acknowledged write lost: {k[0]}:{k[1]} holds {got!r} from {_desc(src)}, "
                       f"older than the last acknowledged {_desc(last_ok)}")
    return out


def writable(probes: Mapping[str, tuple[bool, float, str]], deadline: float,
             active_moves: Mapping[str, str | None]) -> list[str]:
    """`probes[tablet]` = (a write at its owner was acknowledged, seconds after the heal
    it was, last error); `active_moves[zero]` = the active move that zero's state still
    holds after the heal (None: none)."""
    out = [f"writable: tablet {t} took no write within {deadline:.0f}s after the heal (waited {s:.1f}s; "
           f"last answer: {err})" for t, (ok, s, err) in sorted(probes.items()) if not ok]
    out += [f"writable: zero {z} still holds an active move after the heal: {m}"
            for z, m in sorted(active_moves.items()) if m is not None]
    return out


def owners(zero_owners: Mapping[str, list[int]], refusals: Mapping[str, Mapping[int, str]]) -> list[str]:
    """`zero_owners[tablet]` lists the groups whose tablets hold it in zero's final state
    (exactly one is right); `refusals[tablet][group]` is how each other group's data node
    answered a read of it: "refused:<owner it named>", or what went wrong."""
    out: list[str] = []
    for t, gs in sorted(zero_owners.items()):
        if len(gs) != 1:
            out.append(f"owners: tablet {t} is held by groups {sorted(gs)} in zero's final state")
            continue
        for g, answer in sorted(refusals.get(t, {}).items()):
            if answer != f"refused:{gs[0]}":
                out.append(f"owners: tablet {t} is owned by group {gs[0]}, but group {g}'s data node "
                           f"answered a read with {answer!r} (it must refuse, naming group {gs[0]})")
    return out


def sampled_owners(ops: Iterable[Op]) -> list[str]:
    """The monitor's `sample` ops name (under "owners") every tablet of the workload that
    the sampled state left unowned or gave to more than one group."""
    return [f"owners: tablet {t} is held by groups {gs} in the state of version {o.value.get('version')} "
            f"sampled at {o.invoke:.3f}"
            for o in ops if o.f == "sample" and o.type == OK for t, gs in sorted(o.value.get("owners", {}).items())]


def read_only_spans(ops: Iterable[Op], limit: float) -> list[str]:
    """From the monitor's `sample` ops (value: {"ro": {tablet: move_ts}}), every tablet
    seen read-only for one move (same move_ts) over more than `limit` seconds."""
    samples = sorted((o for o in ops if o.f == "sample" and o.type == OK), key=lambda o: o.invoke)
    first: dict[tuple[str, int], float] = {}
    last: dict[tuple[str, int], float] = {}
    for o in samples:
        for t, ts in o.value.get("ro", {}).items():
            first.setdefault((t, ts), o.invoke)
            last[(t, ts)] = o.complete
    return [f"read_only: tablet {t} stayed read-only for move_ts {ts} for {last[(t, ts)] - f0:.1f}s "
            f"(from {f0:.3f}; limit {limit:.0f}s)"
            for (t, ts), f0 in sorted(first.items()) if last[(t, ts)] - f0 > limit]


# A data node answers a Put or Get with OK, FAILED_PRECONDITION (refused: moving, read-only,
# another owner) or, when it or zero is away, an indeterminate error. Anything else is a bug.
_EXPECTED = ("FAILED_PRECONDITION", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


def put_errors(ops: Iterable[Op]) -> list[str]:
    return [f"errors: unexpected answer to a write: {_desc(o)}" for o in ops
            if o.f == "put" and o.type != OK and not o.error.startswith(_EXPECTED)]
