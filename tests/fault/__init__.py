"""Jepsen-style fault suite (issue 11): real `zero run` processes, a seeded nemesis,
concurrent workloads that record every call in a history, and pure checkers that read
the history afterwards.

How the pieces stack:
    history.py   - Op records (invoke/complete times from time.monotonic) and the dump file
    workloads.py - client threads (leases, tablet claims, connects, stream watchers)
    nemesis.py   - faults on a cluster: kill -9, SIGSTOP/SIGCONT, full restart, transfer storms,
                   delay/stall/reset through the proxy, adding and removing a zero
    proxy.py     - a userspace TCP proxy per zero (the kernel has no netem): delay, jitter, stalls
    loopback.py  - the nemesis' target: zeros on 127.0.0.1, optionally behind proxies
    netns.py     - network namespaces + veth + bridge + iptables for partitions (root only)
    checkers.py  - pure functions: history in, list of violations out; `liveness` fails a
                   vacuous run (a kind of call starved, a silent watcher, no committed move)
    runner.py    - one seeded, bounded run: start, workload + nemesis, heal, final checks
    moves_*.py   - the move workload with durable data nodes, its run and its checkers
    txn_*.py     - transactions through the oracle: the client loop and Oracle-stream subscribers
                   (txn_workload), the run (txn_run), the shared checkers (txn_checks);
                   bank.py and list_append.py are the two workloads and their own checkers
"""
