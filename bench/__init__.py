"""Benchmarks: each ``bench/bench_*.py`` module measures fleet against a raw baseline in the same run.

Run them all with ``python -m bench`` (or some: ``python -m bench enforcer``). Benchmarks
print figures; they never assert on time.
"""
