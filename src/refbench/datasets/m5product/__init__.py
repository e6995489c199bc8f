"""M5Product five-modality e-commerce items: builder, readers of the info JSON / label list /
id lists, video and audio feature files, the on-disk release index, webdataset shards and
the learnable synthesizer."""

from refbench.datasets.m5product.builder import M5ProductBuilder

__all__ = ["M5ProductBuilder"]
