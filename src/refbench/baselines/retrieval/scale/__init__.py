"""SCALE / M5-MMT (Dong et al., CVPR 2022): the five-modality network with its fusion
transformer (`model`), the self-harmonized contrastive loss and masked modelling tasks
(`pretext`), M5Product rows as inputs (`inputs`) and the registered baseline that
pretrains on M5Product and ranks a gallery (`baseline`). Recipes are in `recipes/`."""

from refbench.baselines.retrieval.scale.baseline import Scale
from refbench.baselines.retrieval.scale.model import ScaleConfig, ScaleModel

__all__ = ["Scale", "ScaleConfig", "ScaleModel"]
