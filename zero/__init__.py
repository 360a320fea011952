"""zero: a cluster coordinator modeled on Dgraph Zero, built on raftcore.

The layers, lowest first; a module imports its own layer and those below it, never one
above (tests/test_layering.py checks it, and that zero.state stays pure)::

    cli, runner, __main__
                         the `zero` command; `zero run` as a process (signals, exit codes)
    app                  one zero: wires every component below, in one place
    datanode             the reference data node (a client of zero, as yours would be)
    frontdoor            gRPC servicers, interceptor and forwarding, liveness,
                         the membership stream, the HTTP port
    leader  | ops        leader duties (leases, moves, rebalancer) | backup, recovery,
                         `zero local`, `zero admin`
    replica              ZeroNode: Ready loop, proposals, reads, peer transport,
                         zero membership, identity files
    client               zero.client, the data nodes' library
    state | config, datadir, log, metrics, net, rpc, security
                         the pure replicated state machine | shared plumbing
    pb, errors           generated messages; errors that name their gRPC status

docs/DESIGN.md "Layers" says what goes where and why.
"""

__all__ = ["app", "cli", "client", "config", "datadir", "datanode", "errors", "frontdoor", "leader", "log",
           "metrics", "net", "ops", "pb", "replica", "rpc", "runner", "security", "state"]
