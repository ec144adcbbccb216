"""Benchmarks for exoplane; run with ``make bench``."""
