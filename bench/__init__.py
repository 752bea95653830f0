"""Benchmarks: ``python -m bench``. Not part of the test run; see docs/benchmarks.md."""
