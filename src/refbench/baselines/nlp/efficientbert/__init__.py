"""EfficientBERT (Dong et al., 2021): the searched-FFN student (`model`), its FFN search
space (`space`), the weight-sharing supernet (`supernet`), the learned sampler (`sampler`)
the three-stage search (`search`, registered as `refbench search efficientbert`; what it
writes: `outputs`), stand-alone distilled students (`standalone`), integer architecture codes
(`encoding`) and the ranking-consistency client (`ranking`, registered as `refbench search
efficientbert-ranking`)."""

from refbench.baselines.nlp.efficientbert.model import EfficientBert, EfficientBertConfig

__all__ = ["EfficientBert", "EfficientBertConfig"]
