"""Drivers for the peers zero is measured against (bench/run.py): an etcd 3.4 cluster
(etcd.py), a PySyncObj 0.3.17 cluster (pysyncobj_cluster.py, whose nodes run pysyncobj_node.py in
a private venv), the gRPC load client shared by zero and etcd (load.py) and the
kill -9 failover driver shared by zero and etcd (failover.py). Everything binds
127.0.0.1 only, and every process started here is killed by its owner's cleanup()."""
