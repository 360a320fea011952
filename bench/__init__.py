"""Benchmarks. Each bench/*_bench.py is a standalone script with its own goals; `python -m
bench` (bench/run.py) runs zero side by side with PySyncObj and etcd on this machine and
writes docs/BENCHMARKS.md; bench/peers/ holds the peers' drivers and the shared load client."""
