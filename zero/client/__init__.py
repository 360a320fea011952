"""zero.client: the client data nodes use to talk to zero.

    async with ZeroClient(["zero1:5080", "zero2:5080", "zero3:5080"]) as zc:
        me = (await zc.connect("dn1:7080")).member      # joins a group
        zc.start_watch()                                # keep the shard map current
        await zc.wait_synced()
        gid = zc.group_for("name")                      # answered locally
        tablet = await zc.should_serve("name", me.group_id)
        ts = await zc.timestamp()                       # merged with concurrent callers
        uid = await zc.uid()                            # from a locally leased block
        start = await zc.timestamp()                    # a transaction ...
        d = await zc.commit(start, keys=[k], writes=[("name", gid)])  # ... decided by the oracle
        await zc.wait_for_ts(read_ts)                   # every commit <= read_ts is known

What it does for you:
- finds the leader among the addresses it is given, following the
  `zero-leader-addr` trailer of non-leaders, and retries UNAVAILABLE with jittered
  exponential backoff until a deadline (router);
- keeps the membership state current from StreamMembership, resuming from the last
  version it saw, and answers group_for(tablet) without a round trip (watch, view);
- merges concurrent timestamp requests into one request per round trip on one
  long-lived TimestampStream, as TiKV PD's TSO client does: requests that arrive while
  one is in flight go in the next one, so a request that starts after another finished
  always gets a larger timestamp (unary Timestamps RPCs against a zero without the
  stream) (timestamps);
- leases UIDs in blocks and hands them out locally (client);
- merges concurrent commits into CommitBatches on one CommitStream, and follows the
  Oracle stream for max_assigned (wait_for_ts) and the commits (commits).
"""

from zero.client.client import ZeroClient
from zero.client.commits import CommitRefused
from zero.client.router import RETRYABLE
from zero.client.view import MembershipView

__all__ = ["ZeroClient", "MembershipView", "RETRYABLE", "CommitRefused"]
