"""SQuAD v1.1 / v2.0: the builder of the official JSON files and its synthesizer."""

from refbench.datasets.squad.builder import SquadBuilder

__all__ = ["SquadBuilder"]
