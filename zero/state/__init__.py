"""The replicated state machine: pure.

Committed proposals in, a new state and a result out — the same on every zero, so it
imports no asyncio, grpc, time, os or socket (tests/test_layering.py enforces it).
The shard map, members, zeros, move records, lease counters, proposal dedup, input
validation and the version gate live here; the transaction oracle's conflict table and
decisions go here too.
"""
