"""How a zero comes to its cluster when it starts on a data dir, and the Raft
configuration it runs with.

- A data dir with an IDENTITY restarts with that raft id (`--peer` is ignored); a joiner
  restarted before its state caught up still knows its cluster from the join answer
  kept beside it (zero/replica/identity.py).
- A new data dir with `peer` set joins that cluster through JoinCluster: the cluster
  assigns the raft id, and the node starts with no configuration (the leader brings it
  up to date, as a learner first — zero/replica/membership.py).
- A new data dir without `peer` bootstraps a single-member cluster.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from raftcore import Config, Node

from zero import buggify
from zero.errors import FailedPreconditionError, ZeroError
from zero.log import Logger
from zero.pb import raft_transport_pb2 as tpb
from zero.replica.identity import Identity, load_identity, load_join_answer, save_identity, save_join_answer
from zero.replica.options import NodeOptions
from zero.replica.ports import PeerTransport, WalStorage
from zero.state.machine import ZeroState
from zero.state.versions import ZERO_VERSION

__all__ = ["Origin", "find_origin", "raft_config", "check_restorable", "start_raft"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where this start of a zero comes from."""

    raft_id: int
    fresh: bool  # a data dir no zero used before
    joined: tpb.JoinClusterResponse | None  # the answer of a join made by this start
    cluster_id: str = ""  # from a join answer (now or before a restart), until the state has it
    peers: dict[int, str] | None = None  # the zeros that answer named, likewise


async def find_origin(opts: NodeOptions, transport: PeerTransport, log: Logger) -> Origin:
    """Read the identity in opts.data_dir, or join through opts.peer (saving the answer)."""
    os.makedirs(opts.data_dir, exist_ok=True)
    ident = load_identity(opts.data_dir)
    if ident is None and opts.peer:
        # A new zero joining an existing cluster: the cluster assigns the id.
        joined = await transport.join(opts.peer, opts.my_addr, opts.raft_id, timeout=opts.join_timeout)
        save_join_answer(opts.data_dir, joined)
        return Origin(joined.raft_id, True, joined, joined.cluster_id, {m.id: m.addr for m in joined.peers})
    if ident is None:
        return Origin(opts.raft_id or 1, True, None)
    if opts.peer:
        log.info("data dir has an identity; ignoring --peer", peer=opts.peer, raft_id=ident.raft_id)
    # A joiner restarted before its state caught up still knows its cluster.
    answer = load_join_answer(opts.data_dir)
    rid = ident.raft_id
    if opts.raft_id and opts.raft_id != rid:
        raise ZeroError(
            f"data dir {opts.data_dir} belongs to raft id {rid}, not {opts.raft_id}: "
            "a zero keeps its identity across restarts")
    if answer is not None:
        return Origin(rid, False, None, answer.cluster_id, {m.id: m.addr for m in answer.peers})
    return Origin(rid, False, None)


def raft_config(opts: NodeOptions, raft_id: int, storage: WalStorage, applied: int, log: Logger, *,
                rng: random.Random | None = None) -> Config:
    """raftcore's Config for this zero; `rng` (None: an unseeded one) draws the election
    timeouts, so a simulation passes a seeded one."""
    max_size, inflight = 1 << 20, 256
    if buggify.ON and buggify.fire("raft.tiny-messages"):
        max_size, inflight = 1, 2  # one entry per append, two appends in flight per follower
    return Config(
        id=raft_id, storage=storage, election_tick=opts.election_ticks, heartbeat_tick=opts.heartbeat_ticks,
        applied=applied, max_size_per_msg=max_size, max_inflight_msgs=inflight,
        max_uncommitted_entries_size=64 << 20, check_quorum=True, pre_vote=True, logger=log,
        rng=random.Random(rng.getrandbits(64)) if rng is not None else None)


def check_restorable(state: ZeroState, raft_id: int) -> None:
    """Refuse to run a data dir whose zero was removed, or whose cluster runs a newer
    version than this zero (its log may hold entries this zero cannot decode)."""
    if state.is_removed(raft_id, zero=True):
        raise FailedPreconditionError(
            f"zero {raft_id} was removed from its cluster; start with a fresh data dir and --peer to join again")
    if state.cluster_version > ZERO_VERSION:
        raise FailedPreconditionError(
            f"this data dir's cluster runs version {state.cluster_version}, newer than this zero "
            f"({ZERO_VERSION}): it may hold entries this zero cannot decode; run a newer zero")


def start_raft(opts: NodeOptions, origin: Origin, config: Config, storage: WalStorage, log: Logger) -> Node:
    """raftcore's Node for this start: a joiner starts empty, a new data dir
    bootstraps itself alone (both then write IDENTITY), anything else restarts."""
    rid = origin.raft_id
    if origin.fresh and storage.last_index() == 0 and origin.joined is not None:
        # No bootstrap: the leader brings us up to date (log or snapshot).
        node = Node.start(config, None)
        save_identity(opts.data_dir, Identity(rid))
        log.info("joined a cluster as a learner", raft_id=rid, cluster_id=origin.cluster_id,
                 peers=sorted(origin.peers or {}))
    elif origin.fresh and storage.last_index() == 0:
        node = Node.start(config, [rid])
        save_identity(opts.data_dir, Identity(rid))
        log.info("bootstrapping a new cluster", raft_id=rid, data_dir=opts.data_dir)
    else:
        node = Node.restart(config)
        log.info("restarting from data dir", raft_id=rid, data_dir=opts.data_dir,
                 applied=config.applied, last_index=storage.last_index(), term=storage.initial_state()[0].term)
    return node
