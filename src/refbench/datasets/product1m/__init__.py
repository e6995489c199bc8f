"""Product1M instance-level product retrieval: builder, item/JSON readers, region-feature
LMDB reader (restricted unpickling) and the learnable synthesizer."""

from refbench.datasets.product1m.builder import Product1MBuilder

__all__ = ["Product1MBuilder"]
