"""kvstore: a replicated key-value store on raftcore.Node, after etcd's raftexample.

How the pieces stack (each file is small enough to read in one sitting):
  kvstore.py    the replicated state machine: a dict, the proposal encoding, snapshots
  transport.py  peer messages over asyncio TCP streams (length-prefixed raftpb.Message)
  raftnode.py   the Ready loop: ticks, send, persist (DiskStorage), apply, advance;
                snapshots + compaction; proposals and ReadIndex reads that wait
  httpapi.py    PUT/GET/DELETE /<key> and GET /_status over aiohttp
  __main__.py   one node process: `python -m examples.kvstore --id 1 --cluster ...`
  cluster.py    N local node processes from one command

See README.md in this directory for how to run it and how it maps to raftexample.
"""
