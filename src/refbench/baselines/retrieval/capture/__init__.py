"""CAPTURE (Zhan et al., ICCV 2021): the hybrid-stream network (`model`), its pretext tasks
MLM / MRM / CLR (`pretext`) and the registered baseline that pretrains on Product1M and
ranks the gallery (`baseline`). Recipes are in `recipes/`."""

from refbench.baselines.retrieval.capture.baseline import Capture
from refbench.baselines.retrieval.capture.model import CaptureConfig, CaptureModel

__all__ = ["Capture", "CaptureConfig", "CaptureModel"]
