"""EfficientBERT (Dong et al., 2021): the searched-FFN student (`model`), its FFN search
space (`space`), the weight-sharing supernet (`supernet`), the learned sampler (`sampler`)
and the three-stage search (`search`, registered as `refbench search efficientbert`)."""

from refbench.baselines.nlp.efficientbert.model import EfficientBert, EfficientBertConfig

__all__ = ["EfficientBert", "EfficientBertConfig"]
