"""Leader duties: work only the Raft leader does, started and stopped with its term.

Lease blocks for ids and timestamps, the tablet move driver and the rebalancer.
"""
