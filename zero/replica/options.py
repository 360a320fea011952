"""NodeOptions: what one zero's replica is configured with, and the figures derived from it."""

from __future__ import annotations

from dataclasses import dataclass

from zero.config import election_timeout_seconds

__all__ = ["NodeOptions"]


@dataclass(frozen=True, slots=True)
class NodeOptions:
    data_dir: str
    my_addr: str
    raft_id: int = 0  # 0: from the data dir's identity, else 1 for a new cluster
    tick_seconds: float = 0.1
    election_ticks: int = 5
    heartbeat_ticks: int = 1
    snapshot_every: int = 10_000
    replicas: int = 1
    proposal_timeout: float = 5.0
    read_timeout: float = 5.0
    peer: str = ""  # HOST:PORT of any live zero: a new data dir joins that cluster
    join_timeout: float = 60.0  # how long a join keeps retrying before start() fails
    transfer_on_stop: float = 2.0  # a leader hands leadership over for at most this long on stop
    lease_margin: int = 1_000_000  # ids skipped above the leases after a WAL whose damaged tail was cut off

    @property
    def election_timeout(self) -> float:
        """The election timeout in seconds (zero.config.election_timeout_seconds); the
        replica's waits that must outlast an election are multiples of it."""
        return election_timeout_seconds(self.tick_seconds, self.election_ticks)
