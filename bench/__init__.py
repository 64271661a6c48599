"""Benchmarks for the job engine: `python -m bench poll` and `python -m bench footprint`.

Each prints one JSON document on stdout; progress goes to stderr.
"""
