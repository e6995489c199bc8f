"""Benchmarks: declarative YAML specs and the scoring of prediction files."""
