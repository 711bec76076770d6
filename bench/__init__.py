"""workerctl's benchmark: the floors this machine sets, workerctl, and its peers, measured side by side.

Run `python bench/run.py` from a checkout (see docs/benchmarks/results.md for the latest results).
"""
