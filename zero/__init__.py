"""zero: a cluster coordinator modeled on Dgraph Zero, built on raftcore."""
