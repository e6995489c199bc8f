"""Medical-VLBERT (Liu et al., IEEE TNNLS 2021): the network (`model`), the alternate learning
schedule (`schedule`) between knowledge pretraining and transfer (`pretext`), report
generation (`generate`), tokenization (`text`) and the registered baseline (`baseline`).
Recipes are in `recipes/`."""

from refbench.baselines.report.medical_vlbert.baseline import MedicalVLBERTBaseline
from refbench.baselines.report.medical_vlbert.model import MedicalVLBERT, MedicalVLBERTConfig

__all__ = ["MedicalVLBERT", "MedicalVLBERTBaseline", "MedicalVLBERTConfig"]
