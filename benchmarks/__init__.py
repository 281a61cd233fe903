"""Benchmarks: stage timings of our path vs the official structure (run.py), parameter counts."""
