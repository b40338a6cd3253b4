"""Benchmarks: pure ones (the routing core) and drivers of emulated runs."""
