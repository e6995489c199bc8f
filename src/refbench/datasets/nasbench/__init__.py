"""Tabular NAS benchmarks (NAS-Bench-Macro, NASLib's zero-cost tables): encodings, strict
readers, builders and synthesizers."""

from refbench.datasets.nasbench.builder import (
    NasBenchMacroBuilder,
    NaslibZeroCostBuilder,
)

__all__ = ["NasBenchMacroBuilder", "NaslibZeroCostBuilder"]
