"""The mutants: what each breaks, the exact edit, and the tests that must catch it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Edit", "Mutant", "MUTANTS"]


@dataclass(frozen=True, slots=True)
class Edit:
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    breaks: str  # the guarantee, in words
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids or paths; at least one must fail


STALE_LEADER = "tests/cluster/test_stale_leader.py::test_a_resumed_leader_answers_nothing_stale"
LAGGING_FOLLOWER = "tests/cluster/test_stale_leader.py::test_a_lagging_follower_never_serves_a_stale_linearizable_read"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "skip-readindex-before-timestamps",
        "a timestamp is handed out only after a ReadIndex round that began after the request (SPEC semantics 2)",
        (Edit("zero/leader/leases.py",
              "            await node.read_barrier()\n        return await self._hand_out(",
              "            pass\n        return await self._hand_out("),
         Edit("zero/leader/leases.py",
              "        return asyncio.ensure_future(self.node.read_barrier())",
              "        return asyncio.ensure_future(asyncio.sleep(0))")),
        (STALE_LEADER,),
    ),
    Mutant(
        "local-reads-on-any-leader",
        "only a leader that is its configuration's only voter may skip the ReadIndex round",
        (Edit("raftcore/rawnode.py",
              "if (r.state == StateType.LEADER and r.prs.is_singleton() and r.id in r.prs.config.voters.incoming",
              "if (r.state == StateType.LEADER"),),
        (STALE_LEADER,),
    ),
    Mutant(
        "follower-reads-locally",
        "a follower's linearizable read waits for the leader's read index (ReadIndex, thesis §6.4)",
        (Edit("zero/replica/node.py",
              "        local = node.local_read_index()\n",
              "        if not self.is_leader:\n            return\n        local = node.local_read_index()\n"),),
        (LAGGING_FOLLOWER,),
    ),
    Mutant(
        "lease-blocks-outlive-their-term",
        "blocks leased in an earlier term are dropped on any change of leadership",
        (Edit("zero/leader/leases.py", "            pool.blocks.clear()\n", "            pass\n"),
         Edit("zero/leader/leases.py", "            if b.term != term:\n", "            if False:\n")),
        ("tests/zero/test_lease_terms.py",),
    ),
    Mutant(
        "ids-before-their-lease-commits",
        "every leased block is committed through Raft before any id of it is handed out",
        (Edit("zero/leader/leases.py",
              "            applied = await self.node.propose(\n"
              "                state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(kind=pool.kind, count=size)))\n"
              "            ids = applied.ids\n",
              "            st = self.node.state.state_copy()\n"
              "            top = max(st.max_uid if pool.kind == zero_pb2.UID else st.max_txn_ts,\n"
              "                      max((b.end for b in pool.blocks), default=0))\n"
              "            asyncio.ensure_future(self.node.propose(state_pb2.Proposal(lease_ids=state_pb2.LeaseIds(\n"
              "                kind=pool.kind, count=size)))).add_done_callback(lambda f: f.cancelled() or f.exception())\n"
              "            ids = zero_pb2.AssignedIds(start_id=top + 1, end_id=top + size)\n"),),
        (STALE_LEADER,),
    ),
    Mutant(
        "commit-earlier-term-by-counting",
        "a leader commits only entries of its own term by counting replicas (Raft §5.4.2, Figure 8)",
        (Edit("raftcore/log.py",
              "if max_index > self.committed and self.term_or_zero(max_index) == term:",
              "if max_index > self.committed:"),),
        ("tests/raftcore/test_simulation.py::test_randomized_chaos",),  # the chaos run alone must catch it
    ),
    Mutant(
        "no-dedup",
        "a retried proposal is applied once: its dedup key returns the first result",
        (Edit("zero/state/machine.py", "        if key and key in dedup:\n", "        if False:\n"),),
        ("tests/zero/test_state.py",),
    ),
    Mutant(
        "no-crc-check",
        "a WAL record whose checksum does not match is never used",
        (Edit("raftcore/wal/record.py",
              "                and pcrc == crc32c(payload := buf[off + hsize : end])\n",
              "                and (payload := buf[off + hsize : end]) is not None\n"),
         Edit("raftcore/wal/record.py",
              "    if pcrc != crc32c(buf[off + RECORD_HEADER_SIZE : end]):\n",
              "    if False:\n")),
        ("tests/raftcore/wal/test_wal_storage.py",),
    ),
    Mutant(
        "leases-not-raised-after-wal-repair",
        "after a WAL whose damaged tail was cut off, leases continue above a margin, never from the repaired state",
        (Edit("zero/replica/duties.py", "        if storage.repaired is not None:\n", "        if False:\n"),),
        ("tests/fault/test_corruption.py::test_a_cut_lease_record_is_never_handed_out_again",),
    ),
    Mutant(
        "no-move-fence",
        "a tablet is read-only while it is being moved",
        (Edit("zero/state/moves.py", "    tablet.read_only = True\n", "    tablet.read_only = False\n"),),
        ("tests/zero/test_state.py", "tests/zero/test_state_properties.py"),
    ),
    Mutant(
        "watermark-ignores-batches-in-flight",
        "every commit at or below an Oracle stream's max_assigned was sent before it (SPEC oracle rule 4)",
        (Edit("zero/leader/oracle.py",
              "        value = min(self.inflight) - 1 if self.inflight else self.highest\n",
              "        value = self.highest\n"),),
        ("tests/zero/test_oracle.py::test_the_oracle_stream_and_its_watermark",),
    ),
    Mutant(
        "first-committer-does-not-win",
        "a transaction aborts when a commit after its start_ts wrote one of its keys (snapshot isolation)",
        (Edit("zero/state/oracle.py",
              "            if ts is not None and ts > start_ts:\n",
              "            if ts is not None and ts > start_ts + 1:\n"),),
        ("tests/zero/test_oracle_state.py",),
    ),
    Mutant(
        "txn-read-skips-the-watermark",
        "a data node's read at read_ts waits until every commit up to read_ts is known (the oracle's max_assigned)",
        (Edit("zero/datanode/txn_service.py",
              "            await host.zc.wait_for_ts(read_ts, timeout=self.read_wait)\n",
              "            await asyncio.sleep(0)\n"),),
        ("tests/zero/test_datanode_txn.py::test_concurrent_increments_lose_nothing",),
    ),
    Mutant(
        "aborted-writes-applied",
        "an aborted transaction's writes are dropped, never stored as versions",
        (Edit("zero/datanode/transactions.py",
              "        if r.aborted:\n            self.aborted += 1\n            return self.flusher.submit(lines=[resolved_line(ts)])\n",
              "        if r.aborted:\n            self.aborted += 1\n"),
         Edit("zero/datanode/transactions.py",
              "        versions = [(t, k, r.commit_ts, v) for (t, k), v in p.writes.items()]\n",
              "        versions = [(t, k, r.commit_ts or ts, v) for (t, k), v in p.writes.items()]\n")),
        ("tests/zero/test_datanode_txn.py::test_a_move_carries_versions_and_settles_held_writes",
         "tests/zero/test_datanode_txn.py::test_restart_keeps_versions_and_resolves_held_writes"),
    ),
    Mutant(
        "gc-drops-the-visible-version",
        "garbage collection below safe_ts keeps the newest version at or below it (reads at safe_ts see it)",
        (Edit("zero/datanode/store.py",
              "    return versions[i - 1:] if i > 1 else versions\n",
              "    return versions[i:] if i > 1 else versions\n"),),
        ("tests/zero/test_datanode_txn.py::test_gc_below_safe_ts_keeps_reads_right_and_min_active_ts_holds_it",
         "tests/zero/test_datanode_txn.py::test_store_versions_collect_and_rewrite"),
    ),
)
