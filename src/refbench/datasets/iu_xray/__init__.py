"""IU X-ray (Open-i) radiology reports: builder (configs `r2gen`, `openi`, `kaggle`),
readers of the XML archive, the R2Gen annotation and the Kaggle tables, and a learnable
synthesizer that writes all three layouts with images whose findings the reports state."""

from refbench.datasets.iu_xray.builder import IUXrayBuilder

__all__ = ["IUXrayBuilder"]
