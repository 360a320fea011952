"""Leader duties: work only the Raft leader does, started and stopped with its term.

    leases        id and timestamp lease blocks, handed out in memory
    driver        the tablet move driver: StartMove, the copy, CommitMove or rollback
    planner       the rebalancer's plan (pure)      backoff    failed tablets wait
    datanodes     which data nodes to call, and the channels to them
    move_metrics  the driver's counters and the group-size gauge

Each takes the zero it runs on as a small Protocol (LeaseHost, MoveHost), and the app
registers each with the node's leadership callbacks: nothing registers itself.
"""

__all__ = ["backoff", "datanodes", "driver", "leases", "move_metrics", "planner"]
