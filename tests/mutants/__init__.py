"""The mutation gate: `python -m tests.mutants` breaks, one at a time, the guarantees
zero is built on (catalog.py: skip the ReadIndex round before timestamps, serve reads
locally on any leader or follower, reuse lease blocks of an earlier term, hand out ids
before their lease is committed, commit entries of an earlier term by counting replicas,
no dedup, no CRC check, no fencing of a moving tablet), runs the tests named for each on
a temporary copy of the tree, and fails if any mutant survives.

Each mutation is an exact text replacement that must match exactly once, so a catalog
that no longer fits the code fails loudly instead of testing nothing. The named tests
provoke each case directly (bounded, not a random schedule that may miss it), so every
mutant must be caught on every run.
"""
