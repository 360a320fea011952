"""raftcore.Node: the asyncio wrapper, driven like an application would."""

from __future__ import annotations

import asyncio
import random

import pytest
from support.aio import until

from raftcore import Config, MemoryStorage, Node, NodeStoppedError, ProposalDroppedError, StateType, raftpb


class App:
    """A tiny replicated log on Node: persists to MemoryStorage, delivers messages
    in-process, applies committed entries."""

    def __init__(self, nid: int, peers: list[int], cluster: dict[int, "App"], seed: int) -> None:
        self.id = nid
        self.storage = MemoryStorage()
        self.node = Node.start(Config(id=nid, storage=self.storage, rng=random.Random(seed + nid),
                                      election_tick=10), peers)
        self.cluster = cluster
        self.applied: list[bytes] = []
        self.read_states: list = []

    async def run(self) -> None:
        try:
            while True:
                rd = await self.node.ready()
                if rd.snapshot is not None:
                    self.storage.apply_snapshot(rd.snapshot)
                self.storage.append(rd.entries)
                if rd.hard_state is not None:
                    self.storage.set_hard_state(rd.hard_state)
                for m in rd.messages:
                    peer = self.cluster.get(m.to)
                    if peer is not None and not peer.node.stopped:
                        peer.node.step_nowait(m)
                for e in rd.committed_entries:
                    if e.type == raftpb.EntryConfChange:
                        self.node.apply_conf_change(raftpb.ConfChange.FromString(e.data))
                    elif e.type == raftpb.EntryConfChangeV2:
                        self.node.apply_conf_change(raftpb.ConfChangeV2.FromString(e.data))
                    elif e.data:
                        self.applied.append(e.data)
                self.read_states.extend(rd.read_states)
                self.node.advance(rd)
        except NodeStoppedError:
            return


async def _ticker(apps: dict[int, App], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for a in apps.values():
            if not a.node.stopped:
                a.node.tick()
        await asyncio.sleep(0.001)


def _leader(apps: dict[int, App]) -> App | None:
    for a in apps.values():
        if not a.node.stopped and a.node.status().raft_state == StateType.LEADER:
            return a
    return None


@pytest.mark.timeout(30)
def test_three_nodes_elect_replicate_and_stop():
    async def main() -> None:
        apps: dict[int, App] = {}
        for i in (1, 2, 3):
            apps[i] = App(i, [1, 2, 3], apps, seed=7)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run()) for a in apps.values()]
        tasks.append(asyncio.create_task(_ticker(apps, stop)))
        await until(lambda: _leader(apps) is not None, 5.0)
        lead = _leader(apps)
        assert lead is not None
        for i in range(100):
            await lead.node.propose(b"v%d" % i)
        await until(lambda: all(len(a.applied) == 100 for a in apps.values()), 5.0)
        assert apps[1].applied == apps[2].applied == apps[3].applied == [b"v%d" % i for i in range(100)]

        # A follower forwards proposals to the leader.
        follower = next(a for a in apps.values() if a is not lead)
        await follower.node.propose(b"via-follower")
        await until(lambda: all(a.applied[-1:] == [b"via-follower"] for a in apps.values()), 5.0)

        # ReadIndex through a follower returns a read point covering every write.
        commit_before = lead.node.status().commit
        await follower.node.read_index(b"r1")
        await until(lambda: any(rs.request_ctx == b"r1" for rs in follower.read_states), 5.0)
        rs = next(rs for rs in follower.read_states if rs.request_ctx == b"r1")
        assert rs.index >= commit_before

        # Stopping a node wakes its ready() waiter and refuses later calls.
        await follower.node.stop()
        with pytest.raises(NodeStoppedError):
            await follower.node.propose(b"x")
        # The remaining two still make progress.
        await lead.node.propose(b"after-stop")
        others = [a for a in apps.values() if a is not follower]
        await until(lambda: all(a.applied[-1:] == [b"after-stop"] for a in others), 5.0)

        stop.set()
        for a in apps.values():
            await a.node.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_leader_crash_new_leader_and_restart():
    async def main() -> None:
        apps: dict[int, App] = {}
        for i in (1, 2, 3):
            apps[i] = App(i, [1, 2, 3], apps, seed=11)
        stop = asyncio.Event()
        tasks = {i: asyncio.create_task(a.run()) for i, a in apps.items()}
        ticker = asyncio.create_task(_ticker(apps, stop))
        await until(lambda: _leader(apps) is not None, 5.0)
        old = _leader(apps)
        assert old is not None
        await old.node.propose(b"before")
        await until(lambda: all(a.applied[-1:] == [b"before"] for a in apps.values()), 5.0)
        await old.node.stop()
        await tasks[old.id]

        await until(lambda: _leader(apps) is not None and _leader(apps) is not old, 5.0)
        new = _leader(apps)
        assert new is not None and new.node.status().term > 1
        with pytest.raises(NodeStoppedError):
            await old.node.propose(b"nope")

        # Restart the old leader from what it persisted.
        restarted = App.__new__(App)
        restarted.id, restarted.storage, restarted.cluster = old.id, old.storage, apps
        restarted.applied, restarted.read_states = [], []
        restarted.node = Node.restart(Config(id=old.id, storage=old.storage, rng=random.Random(99)))
        apps[old.id] = restarted
        tasks[old.id] = asyncio.create_task(restarted.run())
        await new.node.propose(b"after")
        await until(lambda: all(a.applied[-1:] == [b"after"] for a in apps.values()), timeout=10)
        assert b"before" in restarted.applied  # re-applied from its own log

        stop.set()
        await ticker
        for a in apps.values():
            await a.node.stop()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 5)

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_propose_without_leader_is_dropped():
    async def main() -> None:
        node = Node.start(Config(id=1, storage=MemoryStorage()), [1, 2, 3])
        with pytest.raises(ProposalDroppedError):
            await node.propose(b"x")
        rd = await node.ready()
        assert [e.index for e in rd.committed_entries] == [1, 2, 3]
        node.advance(rd)
        await node.stop()

    asyncio.run(main())
