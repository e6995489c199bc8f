"""Waymo Open Dataset: the v2 Parquet builder, its pyarrow reader, the v1 TFRecord
container and the synthesizer."""

from refbench.datasets.waymo.builder import WaymoBuilder

__all__ = ["WaymoBuilder"]
