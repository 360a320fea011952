"""Leased blocks belong to the term that leased them (zero/leader/leases.py): a zero that
leads again after another zero led in between must not hand out what is left of the
blocks of its earlier term — the other leader's timestamps are above them. Provoked
directly with two leadership transfers in a three-zero cluster in one process; catches
the mutant `lease-blocks-outlive-their-term` of `python -m tests.mutants` on every run."""

from __future__ import annotations

import asyncio

import pytest

from zero.pb import zero_pb2

from support.aio import until
from zeroapps import app_cluster


@pytest.mark.timeout(90)
def test_a_leader_again_never_reuses_blocks_of_its_earlier_term(tmp_path) -> None:
    async def main() -> None:
        apps = await app_cluster(tmp_path, 3)
        try:
            first = next(a for a in apps if a.node.is_leader)
            other = next(a for a in apps if a is not first)
            got: list[tuple[str, int, int]] = []

            async def take(app, what: str) -> None:  # type: ignore[no-untyped-def]
                await until(lambda: app.node.is_leader, 10, message=f"{what}: leadership")
                ts = await app.leases.assign(zero_pb2.TIMESTAMP, 1)
                uid = await app.leases.assign(zero_pb2.UID, 1)
                got.append((what, ts.start_id, uid.start_id))

            await take(first, "first term")  # leases a block of 10,000 of each kind
            await first.node.transfer_leadership(other.node.raft_id)
            await take(other, "other leader")  # leases above the committed maximum
            await other.node.transfer_leadership(first.node.raft_id)
            await take(first, "first again")
            ts = [t for _, t, _ in got]
            uids = [u for _, _, u in got]
            assert ts == sorted(ts) and len(set(ts)) == 3, f"timestamps went back in time: {got}"
            assert uids == sorted(uids) and len(set(uids)) == 3, f"uids not from fresh blocks: {got}"
        finally:
            for a in apps:
                await a.stop()

    asyncio.run(main())
