"""Benchmarks (``make bench``). Never part of the test run; each prints rows of one table."""
