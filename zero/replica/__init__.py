"""The replica: one zero's Raft node around the pure state machine.

The Ready loop on the WAL, proposals and their waiters, linearizable reads (ReadIndex
rounds), the peer transport between zeros, zero membership (join, promotion, removal,
leadership transfer) and the identity files in the data dir. It knows nothing of the
services above it: they subscribe to its events (leader changes, applied batches).
"""
